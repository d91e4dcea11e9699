"""A fix for PyTriton 0.7.0's proxy model: a refused request must free its input tensors.

PyTriton serves each bound model through a Python-backend model (`pytriton/proxy/model.py`,
copied into its workspace). When the inference callable raises (a bag over the maximum, a
bag of 0 cells), that model's `execute` raises a `TritonModelException` while its frame
still holds the exception in a local variable: frame -> exception -> traceback -> frame, a
reference cycle. The requests (and through them Triton's copies of their input tensors, in
the backend stub and in tritonserver) stay alive until Python's cyclic garbage collector
runs, which in the stub's quiet interpreter is practically never. Measured on the embedded
server: every refused 100,000 x 32 request added 13 MB to tritonserver and 13 MB to the
stub, without bound (60 refusals: +1.7 GB); with the fix, memory stays flat.

The fixed `execute` clears the two locals and returns error responses (the Python backend's
documented way to fail requests) instead of raising: no cycle, and the client reads the
error's last line (exception and message) instead of a server-side traceback naming the
server's paths (the traceback stays in the server's log). A request with an empty input gets
a message that says so (PyTriton's own is "memoryview: cannot cast view with zeros"). The fix is
applied to the copy PyTriton sends to Triton with each model load (never to the installed
package) and refuses to guess: if the installed PyTriton's source differs from the one it
was written for, the server does not start.
"""

from __future__ import annotations

from slamctl.errors import SlamError

_RAISE = """\
        except Exception:
            msg = traceback.format_exc()
            raise pb_utils.TritonModelException(f"Model execute error: {msg}") from None"""
_FIXED = """\
        except Exception as e:  # slamctl (serving/proxy_fix.py): no cycle, one-line error responses
            msg = ([line for line in str(e).splitlines() if line.strip()] or [type(e).__name__])[-1].strip()
            if "cannot cast view with zeros" in msg:  # PyTriton cannot copy an empty tensor
                msg = "an input holds no elements (a dimension of size 0): send at least one; a bag needs a cell"
            count = len(triton_requests)
            triton_requests = triton_responses_or_error = None
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(msg)) for _ in range(count)]"""


def fixed_source(source: str) -> str:
    """The proxy model's source with the cycle broken; SlamError if it is not the known one."""
    if source.count(_RAISE) != 1:
        if _FIXED in source:
            return source
        raise SlamError(
            "the installed PyTriton's proxy model is not the one serving/proxy_fix.py knows "
            "(nvidia-pytriton 0.7.0 expected): reinstall it with `pip install nvidia-pytriton==0.7.0`"
        )
    return source.replace(_RAISE, _FIXED)


def install() -> None:
    """Make PyTriton load the fixed proxy model for every model it binds from now on (it sends
    the proxy's files to Triton with each load request: `Model.get_proxy_model_files`)."""
    from pytriton.models.model import Model

    if getattr(Model.get_proxy_model_files, "slamctl_fixed", False):
        return
    original = Model.get_proxy_model_files

    def get_proxy_model_files(self) -> dict[str, bytes]:
        files = original(self)
        key = f"file:{self.model_version}/model.py"
        files[key] = fixed_source(files[key].decode()).encode()
        return files

    get_proxy_model_files.slamctl_fixed = True
    Model.get_proxy_model_files = get_proxy_model_files
