"""``lrkit explore``: serve the learning-rate explorer on a local address and open it."""

from __future__ import annotations

import socket
import webbrowser

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a web browser.")
def command(host: str, port: int, no_browser: bool) -> None:
    """Watch gradient descent on 2D surfaces at any learning rate, in a web page."""
    if not host.strip():  # an unset variable: the empty address listens on every interface
        raise click.UsageError("--host must name an address, got an empty string (0.0.0.0 listens on every interface)")
    import uvicorn

    from lrkit.explore.app import create_app

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen()  # connections wait in the backlog while the app warms up
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    address = f"http://{shown}:{bound_port}/"
    click.echo(f"lrkit explorer at {address} (Ctrl+C to stop)")
    if not no_browser:
        webbrowser.open(address)
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
