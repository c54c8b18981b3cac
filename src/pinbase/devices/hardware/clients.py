"""What each kind of hardware-protocol client library takes from the server, told apart by the
INTERNAL info it sends after login (`dev`, `ver`, `build`, the order of its keys).

Pure: the session asks `classify` once, with the first INTERNAL info of the connection, and
sends each client only what its library handles. No client is sent PROPERTY (19): Blynk's C++
library reconnects on it, and both Python packages treat it as fatal; widget properties are
stored, reach MQTT devices, and are read back over HTTP. A PING started by the server goes only
to a client known to answer it without harm (blynklib, whose read barrier needs it).

- Blynk's C++ library (Arduino, ESP32; 1.x) announces a `build` key. It reads frame by frame:
  frames go out back to back. No server PING (it would answer one, but needs none).
- blynklib (PyPI 0.2.x, and its MicroPython twin) announces `ver`, `buff-in`, `h-beat` and a
  `dev` containing `python`, in that order. It parses only the first frame of each socket
  read: the read barrier (server PINGs, which it answers) keeps frames apart.
- blynk-library-python (PyPI 0.2.0, module `BlynkLib`) announces `ver`, `h-beat`, `buff-in`
  and `dev` = `python`, in that order. It reads frame by frame; a server PING crashes it, so
  none is sent.
- Anything else, or a device that announces nothing: paced (one frame per `PACING_GAP`), no
  server PING.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Client(enum.Enum):
    UNKNOWN = "unknown"
    """Paced: consecutive frames leave `PACING_GAP` apart; no server PING."""
    FRAMED = "framed"
    """Reads frame by frame: frames go out back to back; no server PING."""
    ONE_PER_READ = "one-per-read"
    """Parses only the first message of each socket read and answers PINGs (blynklib): a read
    barrier of server PINGs between frames."""


BLYNKLIB_KEYS = ("ver", "buff-in", "h-beat", "dev")
"""The keys blynklib announces, in its order."""
BLYNK_LIBRARY_PYTHON_KEYS = ("ver", "h-beat", "buff-in", "dev")
"""The keys blynk-library-python (`BlynkLib`) announces, in its order."""


def classify(info: Mapping[str, str]) -> Client:
    """Which kind of client sent this INTERNAL info (keys in the order sent)."""
    if "build" in info:
        return Client.FRAMED  # the C++ library
    dev = info.get("dev", "").lower()
    keys = tuple(info)
    if keys == BLYNKLIB_KEYS and "python" in dev:
        return Client.ONE_PER_READ  # blynklib, or its MicroPython twin
    if keys == BLYNK_LIBRARY_PYTHON_KEYS and dev == "python":
        return Client.FRAMED  # blynk-library-python
    return Client.UNKNOWN
