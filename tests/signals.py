"""Helpers for tests that send a real Ctrl-C to a child process."""

import signal


def sigint_default() -> None:
    """``preexec_fn`` for a child that must see SIGINT: a launcher in the background (``cmd &``, nohup) leaves
    SIGINT ignored, Python then installs no KeyboardInterrupt handler and the child would never see the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
