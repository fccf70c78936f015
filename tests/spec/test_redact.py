"""Redaction, table-driven over every form in which SQLAlchemy, psycopg/libpq and HTTP clients accept a secret,
and over the outputs that must come through unchanged."""

import pytest

from ups.spec import redact as redaction
from ups.spec.redact import MASK, clip, redact, redact_tree

SECRET = "Zq7/s3cr:et"


@pytest.fixture(autouse=True)
def _forget():
    """Each case starts from what the rules alone mask (no secret learned by an earlier case)."""
    redaction._known.clear()
    yield
    redaction._known.clear()


LEAKY = [
    # URL userinfo, as SQLAlchemy and libpq read it
    ("postgresql+psycopg://ups:s3cret@127.0.0.1:5432/db", "postgresql+psycopg://ups:***@127.0.0.1:5432/db"),
    ("postgresql://u:pa/ss@host/db", "postgresql://u:***@host/db"),  # a '/' in the password
    ("postgresql://u:pa:ss@host:5432/db", "postgresql://u:***@host:5432/db"),  # a ':'
    ("postgresql://u:p%40ss%2Fw0rd@host/db", "postgresql://u:***@host/db"),  # percent-encoded '@' and '/'
    ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),  # a bare '@': masked to the last one
    ("postgresql://u:/starts/with/slash@host/db", "postgresql://u:***@host/db"),
    ("mysql+pymysql://root:Zq7/s3cr:et@db.internal:3306/x", "mysql+pymysql://root:***@db.internal:3306/x"),
    ("https://user:pw1234@mlflow.example.com/api", "https://user:***@mlflow.example.com/api"),
    ("http://admin:hunter22@127.0.0.1:5000", "http://admin:***@127.0.0.1:5000"),
    # malformed or scheme-less
    ("postgresql//u:pa/ss@host/db", "postgresql//u:***@host/db"),
    ("u:pw99@host/db", "u:***@host/db"),
    # query parameters and DSNs
    (
        "postgresql://u@host/db?password=s3cret&sslmode=require",
        "postgresql://u@host/db?password=***&sslmode=require",
    ),
    (
        "postgresql://host/db?sslmode=require&password=s3/cr%40t",
        "postgresql://host/db?sslmode=require&password=***",
    ),
    ("https://h/x?api_key=abcd1234&b=2", "https://h/x?api_key=***&b=2"),
    ("host=localhost password=s3cret dbname=ups", "host=localhost password=*** dbname=ups"),
    ("host=localhost password='se cr\\'et' dbname=ups", "host=localhost password=*** dbname=ups"),
    ("tracking.wandb.api_key=abc123xyz", "tracking.wandb.api_key=***"),
    # inside what Python and YAML print
    ("got {'uri': 'postgresql://u:PW123@h/db'}", "got {'uri': 'postgresql://u:***@h/db'}"),
    ("{'password': 'hunter22', 'user': 'u'}", "{'password': ***, 'user': 'u'}"),
    ('{"token": "abcdef123"}', '{"token": ***}'),
    ("  password: hunter22\n  user: u", "  password: ***\n  user: u"),
    ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer ***"),
]


@pytest.mark.parametrize(("text", "expected"), LEAKY)
def test_every_accepted_form_loses_its_secret(text, expected):
    assert redact(text) == expected


CLEAN = [
    "sqlite:////tmp/x.db",
    "sqlite:///experiments/mlflow.db",
    "see http://h/y and https://h:8080/z",
    "val/rollout_nrmse@10: 0.0123",
    '{"run_id": "abc", "metrics": {"test/rollout_nrmse@1": 0.01, "val/rollout_nrmse@5": 0.2}}',
    "git@github.com:org/repo.git",
    "ups-exp run specs/burgers.yaml train.lr=3e-4 data.num_tokens=8",
    "best: trial 3 value 0.0123 params {'train.lr': 0.001} run abc",
    "Basic information about the run",
    "postgresql://ups@host/db",
    "time 12:30 at home",
    "ups-exp eval specs/ks.yaml --model models:/kspipe@champion",
    "runs:/abc/model and models:/reg/3",
]


@pytest.mark.parametrize("text", CLEAN)
def test_ordinary_output_is_unchanged(text):
    assert redact(text) == text


def test_a_masked_secret_is_masked_wherever_it_appears_later():
    redact("postgresql://u:longer%2Fsecret@h/db")
    assert redact("psycopg said longer/secret was wrong") == "psycopg said *** was wrong"
    assert redact("and longer%2Fsecret too") == "and *** too"


def test_secrets_in_the_environment_are_learned():
    redaction.learn_environment(
        {"WANDB_API_KEY": "k" * 40, "MLFLOW_TRACKING_URI": "postgresql://u:envsecret@h/db"}
    )
    assert redact(f"key {'k' * 40} and envsecret") == f"key {MASK} and {MASK}"


def test_short_secrets_are_masked_in_context_only():
    assert redact("postgresql://ups:ups@127.0.0.1/ups_test") == "postgresql://ups:***@127.0.0.1/ups_test"
    assert redact("ups-exp run") == "ups-exp run"  # 'ups' is not masked everywhere


def test_clip_redacts_before_it_cuts():
    text = "x" * 90 + "postgresql://u:secret99@host/db"
    assert "secret" not in clip(text, 110)


def test_secret_keys_are_masked_in_trees():
    tree = {"wandb": {"api_key": "abc", "project": "p"}, "uri": ["mysql://a:b@h/d"], "num_tokens": "8"}
    assert redact_tree(tree) == {
        "wandb": {"api_key": "***", "project": "p"},
        "uri": ["mysql://a:***@h/d"],
        "num_tokens": "8",
    }
