from tests.conftest import run_cli


def test_help_lists_command_groups():
    r = run_cli("--help")
    assert r.code == 0
    commands = {
        line.split()[1] for line in r.out.splitlines() if line.startswith("│ ") and len(line.split()) > 2
    }
    assert {"data", "train", "evaluate", "experiment", "export", "serve", "infer", "health"} <= commands, (
        r.out
    )


def test_unknown_option_is_a_usage_error():
    r = run_cli("data", "synth", "--nope")
    assert r.code == 2 and "No such option" in r.out + r.err
