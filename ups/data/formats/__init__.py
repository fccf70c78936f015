"""Readers of data files: the catalogue's `formats` table names them (`read(path, cfg) -> ups.Trajectories`)."""
