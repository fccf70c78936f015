from ups.spec.redact import redact, redact_tree


def test_urls_lose_their_passwords_only():
    assert (
        redact("postgresql+psycopg://ups:s3cret@127.0.0.1:5432/db")
        == "postgresql+psycopg://ups:***@127.0.0.1:5432/db"
    )
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact("see https://user:pw@host/x and http://h/y") == "see https://user:***@host/x and http://h/y"


def test_secret_keys_are_masked_in_trees():
    tree = {"wandb": {"api_key": "abc", "project": "p"}, "uri": ["mysql://a:b@h/d"]}
    assert redact_tree(tree) == {"wandb": {"api_key": "***", "project": "p"}, "uri": ["mysql://a:***@h/d"]}
