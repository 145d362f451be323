"""METEOR 1.5 through pycocoevalcap, with a Java process that is always closed.

Denkowski and Lavie, "Meteor Universal: Language Specific Translation Evaluation for Any Target
Language", WMT 2014. Scores come from pycocoevalcap's own ``Meteor`` (same jar, command
``-l en -norm`` and protocol as COCOEvalCap); only the process lifetime is ours. The original
closes its process in ``__del__`` under a lock that an exception mid-scoring leaves held, so a
failed call could hang at garbage collection and a forgotten object leaks a JVM.
:func:`meteor_session` closes the process on exit, error or not.

Start-up costs about 10 s (the JVM loads paraphrase tables): open one session and reuse it.
METEOR's resources here are English only.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator

from pycocoevalcap.meteor.meteor import Meteor

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0


class ClosableMeteor(Meteor):
    """pycocoevalcap's ``Meteor`` with an idempotent, lock-free :meth:`close`."""

    def score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        """``compute_score`` with a clear error if the Java side died (it answers nothing)."""
        try:
            score, scores = self.compute_score(gts, res)
        except (ValueError, OSError) as err:  # float("") of an empty line, or a broken pipe
            stderr = b""
            with contextlib.suppress(OSError, ValueError):
                self.meteor_p.kill()
                self.meteor_p.wait(timeout=CLOSE_TIMEOUT_S)
                stderr = self.meteor_p.stderr.read() or b""
            self.close()
            raise RuntimeError(
                f"METEOR's java process failed: {stderr.decode(errors='replace')[-2000:]}"
            ) from err
        return float(score), [float(s) for s in scores]

    def close(self) -> None:
        process: subprocess.Popen | None = getattr(self, "meteor_p", None)
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            try:
                process.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # pragma: no cover - kill() is SIGKILL
                logger.warning("METEOR java process %d did not exit after kill", process.pid)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()

    def __del__(self) -> None:
        self.close()


@contextlib.contextmanager
def meteor_session() -> Iterator[ClosableMeteor]:
    """A running METEOR scorer (use its ``score(gts, res)``), closed when the block ends."""
    start = time.perf_counter()
    try:
        meteor = ClosableMeteor()
    except FileNotFoundError as err:
        raise RuntimeError("METEOR needs `java` (>= 8) on PATH; none was found") from err
    logger.debug("METEOR java process %d started", meteor.meteor_p.pid)
    try:
        yield meteor
    finally:
        meteor.close()
        logger.info("METEOR session closed after %.1f s", time.perf_counter() - start)
