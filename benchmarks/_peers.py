"""The peers' process seen from a benchmark: ``peers/peer_server.py`` in the peers' venv.

``make bench-peers`` creates that venv (``requirements-peers.txt``: PyTorch CPU,
sentence-transformers, FAISS); the benchmarks talk to it one JSON line at a time, so
that its timings interleave with the project's in one run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

PEER_SERVER = Path(__file__).resolve().parent / "peers" / "peer_server.py"


class Peer:
    """The peer process: one JSON request per line in, one JSON answer per line out."""

    def __init__(self, python: str, model_dir: Path, max_length: int):
        self.process = subprocess.Popen([python, str(PEER_SERVER), str(model_dir), str(max_length)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the peer process stopped (exit code {self.process.wait()}); "
                             "run `make bench-peers` to create its environment")
        answer = json.loads(line)
        if "error" in answer:
            raise SystemExit(f"peer: {answer['error']}")
        return answer

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
