"""`slamctl health`: is the server live and ready, and which models does it serve."""

from __future__ import annotations

import typer

from slamctl import contract
from slamctl.cli.options import CertificateChain, PrivateKey, RootCertificates, Ssl, Timeout, Url
from slamctl.client.settings import CONTROL_TIMEOUT, ClientSettings


def health(
    url: Url = ClientSettings.url,
    timeout: Timeout = CONTROL_TIMEOUT,
    ssl: Ssl = False,
    root_certificates: RootCertificates = None,
    private_key: PrivateKey = None,
    certificate_chain: CertificateChain = None,
) -> None:
    """Server live/ready, each served model with its version and tensors, one line each, then
    the served model id (what `infer --expect-model` pins)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from slamctl.client.channel import channel_credentials
    from slamctl.client.triton import read_card, unreachable

    creds = channel_credentials(root_certificates, private_key, certificate_chain) if ssl else None
    client = grpcclient.InferenceServerClient(url, creds=creds)
    try:
        live = client.is_server_live(client_timeout=timeout)
        ready = client.is_server_ready(client_timeout=timeout)
    except InferenceServerException:
        raise unreachable(url, ssl) from None
    typer.echo(f"server {url}: {'live' if live else 'not live'}, {'ready' if ready else 'not ready'}")
    all_ready = live and ready
    for name in contract.SERVED_MODELS:
        try:
            model_ready = client.is_model_ready(name, client_timeout=timeout)
            meta = (
                client.get_model_metadata(name, client_timeout=timeout, as_json=True) if model_ready else None
            )
        except InferenceServerException:
            model_ready, meta = False, None
        if meta is None:
            typer.echo(f"model {name}: not ready")
            all_ready = False
            continue
        tensors = lambda ts: ", ".join(f"{t['name']} {t['datatype']} {t['shape']}" for t in ts)  # noqa: E731
        typer.echo(
            f"model {name}: ready, versions {','.join(meta['versions'])}; "
            f"in {tensors(meta['inputs'])}; out {tensors(meta['outputs'])}"
        )
    if not all_ready:
        raise typer.Exit(code=1)
    card = read_card(client, url, timeout)
    typer.echo(
        f"model id {card.model_id} (version {card.version}, exported {card.exported_at}): "
        "pin it with infer --expect-model"
    )
