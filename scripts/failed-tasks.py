#!/usr/bin/env python3
"""Print the last failed tasks of an Ansible/molecule log: each task's name and its failure, shortened.

Used after a failed molecule run, so that the cause is the last thing a CI log shows. The log
cannot tell a failure a block rescued (the bad-input checks provoke some) from the one that
stopped the run, which comes last: the last few are printed, the last one last.
    scripts/failed-tasks.py <log> [how many, default 3]
"""
import re
import sys

FAILURE = re.compile(r"^(fatal|failed): \[")
BLOCK_END = re.compile(r"^(TASK|PLAY|RUNNING HANDLER|PLAY RECAP|INFO |WARNING |ERROR |\.\.\.ignoring)")
MAX_LINES = 40
MAX_CHARS = 4000


def failures(lines):
    task = "(no task)"
    for index, line in enumerate(lines):
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip(" *")
        elif FAILURE.match(line):
            block = [line]
            for follow in lines[index + 1:]:
                if BLOCK_END.match(follow) or FAILURE.match(follow):
                    break
                block.append(follow)
            ignored = any(line.startswith("...ignoring") for line in lines[index + len(block):index + len(block) + 1])
            if not ignored:
                yield task, block


def main():
    with open(sys.argv[1], encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    found = list(failures(lines))
    last = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"== {len(found)} failed tasks in {sys.argv[1]} (rescued ones too); the last {min(last, len(found))}:")
    for task, block in found[-last:]:
        text = "\n".join(block[:MAX_LINES])
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS] + " [...]"
        print(f"-- {task}\n{text}")


if __name__ == "__main__":
    main()
