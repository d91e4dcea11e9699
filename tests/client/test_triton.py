"""The one retry policy of both models' requests (client/triton.py)."""

from client.triton import ClientSettings, failure_kind, retry_delay


def test_failure_kinds():
    assert failure_kind("StatusCode.UNAVAILABLE") == "unavailable"
    assert failure_kind("StatusCode.DEADLINE_EXCEEDED") == "timeout"
    # a model checked ready at the start that is gone mid-run is being reloaded: retried
    assert failure_kind("StatusCode.NOT_FOUND") == "model_unavailable"
    assert failure_kind("StatusCode.INVALID_ARGUMENT") == "server_error"


def test_retry_delay_backs_off_then_gives_up():
    settings = ClientSettings(retries=2, backoff=0.5)
    assert [retry_delay(settings, "model_unavailable", a) for a in range(3)] == [0.5, 1.0, None]
    assert retry_delay(settings, "server_error", 0) is None  # a refused request is not retried
