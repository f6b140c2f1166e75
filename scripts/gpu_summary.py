"""One table of what scripts/gpu_check.sh left in OUTDIR: test counts, start-up times, throughput.

python scripts/gpu_summary.py OUTDIR
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def test_rows(out: Path) -> list[str]:
    rows = []
    for xml in sorted(out.glob("*.xml")):
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        if suite is None:
            continue
        n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
        rows.append(
            f"| {xml.stem} | {passed} passed, {n['failures']} failed, {n['errors']} errors, "
            f"{n['skipped']} skipped | {float(suite.get('time', 0)):.0f} s |"
        )
        for case in suite.iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is not None:
                why = (bad.get("message") or "").splitlines()[0][:160] if bad.get("message") else ""
                rows.append(f"| &nbsp;&nbsp;{case.get('name')} | {bad.tag}: {why} | |")
    return rows


def log_rows(out: Path) -> list[str]:
    rows = []
    for log in sorted(out.glob("start-*.log")):
        m = re.search(r"START (\S+) ([\d.]+) s", log.read_text(errors="replace"))
        rows.append(
            f"| engine start, {log.stem[6:]} | {m.group(2) + ' s' if m else 'no result (see ' + log.name + ')'} | |"
        )
    for log in sorted(out.glob("throughput-*.log")):
        text = log.read_text(errors="replace")
        found = re.findall(r"^\| (sc|beam|pf|code) \|.*?\| ([\d.]+) \| >= ([\d.]+) (met|MISSED) \|$", text, re.M)
        if not found:
            rows.append(f"| throughput, {log.stem[11:]} | no result (see {log.name}) | |")
        for name, ratio, target, verdict in found:
            rows.append(
                f"| throughput {log.stem[11:]}, {name} vs vLLM offline | {ratio} (target {target}: {verdict}) | |"
            )
    for log in sorted(out.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("gpu_check:"):
                rows.append(f"| {log.stem} | {line[len('gpu_check: ') :]} | |")
    return rows


def main() -> None:
    out = Path(sys.argv[1])
    device = (out / "device.txt").read_text().strip().replace("\n", "; ") if (out / "device.txt").exists() else "?"
    print(f"GPU check: {device}\n")
    print("| part | result | time |\n|---|---|---|")
    for row in test_rows(out) + log_rows(out):
        print(row)


if __name__ == "__main__":
    main()
