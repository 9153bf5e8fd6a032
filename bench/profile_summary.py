"""Sum a py-spy collapsed-stack file (``bench_ingest.py --profile DIR``) into percentages.

    .venv/bin/python bench/profile_summary.py DIR/worker-cold.txt [--top 25] [--match reading.py ...]

Prints the share of samples (py-spy counts only threads that run, so about the
share of CPU time) spent inside each function (inclusive, any depth) and in
each function itself (exclusive, the top frame), largest first; ``--match``
adds the inclusive share of every frame whose text holds one of the words.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# "function (path/to/file.py:line)" -> "function (file.py)": lines merged.
FRAME = re.compile(r"^(?P<name>.*?) \((?P<path>[^:()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    found = FRAME.match(frame.strip())
    if not found:
        return frame.strip()
    path = found["path"]
    for marker in ("site-packages/", "/work/wt/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{found['name']} ({path})"


def read(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            stacks.append(([short(f) for f in head.split(";")], int(count)))
    return stacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", nargs="*", default=[])
    args = parser.parse_args()
    stacks = read(args.file)
    total = sum(count for _, count in stacks) or 1
    inclusive, exclusive, matched = Counter(), Counter(), Counter()
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] += count
        exclusive[frames[-1]] += count
        for word in args.match:
            if any(word in frame for frame in frames):
                matched[word] += count
    print(f"{args.file}: {total} samples")
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        print(f"-- {title}")
        for frame, count in counter.most_common(args.top):
            print(f"{100 * count / total:6.1f} %  {frame}")
    if args.match:
        print("-- matched (inclusive)")
        for word in args.match:
            print(f"{100 * matched[word] / total:6.1f} %  {word}")


if __name__ == "__main__":
    main()
