"""Checks the fleet's Grafana dashboard against Grafana's own dashboard schema (make rules).

    python tests/monitoring/dashboard_schema.py [DASHBOARD.json]

No Grafana runs here, so the schema is the one Grafana generates from its dashboard kind as
TypeScript types: npm ``@grafana/schema``, pinned with ``typescript`` in
``tests/monitoring/dashboard-schema/`` and installed by ``scripts/bootstrap.sh`` into
``.cache/dashboard-schema``. The dashboard's JSON text goes verbatim, as an object literal, into a
TypeScript file that assigns it to a variable of Grafana's ``Dashboard`` type, and
``tsc --noEmit --strict`` judges it: an object literal keeps its literal types and gets
excess-property checks, so a misspelt or unknown key fails, where a ``resolveJsonModule`` import
would widen and let it through. tsc's errors are printed with the line and column of the JSON
file. Where Grafana's schema is open the check is too: panel targets and options (each
datasource and panel plugin has its own), and the datasource's keys on an annotation query.

Exit status: 0 the dashboard conforms; 1 it does not; 2 the tools are not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "roles", "monitoring", "files", "inferops-fleet.json")
TOOLS = os.path.join(ROOT, ".cache", "dashboard-schema")
TSC = os.path.join(TOOLS, "node_modules", "typescript", "bin", "tsc")

# The pin in dashboard-schema/package.json is @grafana/schema 11.5.3, the newest release whose
# dashboard kind describes schemaVersion 39, the version scripts/make-dashboard.py writes: the
# kind's default schemaVersion is 36 in 10.0 to 11.0, 39 in 11.1 to 11.5, 41 in 11.6 to 12.1 and
# 42 from 12.2 on. That default (defaultDashboard.schemaVersion) is read from the installed
# package and compared with the dashboard's, so a new pin or a new schemaVersion cannot drift
# apart unnoticed.
SCHEMA_VERSION_JS = "process.stdout.write(String(require('@grafana/schema').defaultDashboard.schemaVersion))"

HEADER = """\
// Written by tests/monitoring/dashboard_schema.py for one tsc run: the literal below is the
// dashboard file verbatim, its line 1 on line @FIRST@ here.
import type { AnnotationQuery, Dashboard } from '@grafana/schema';

// JSON holds an enum's value ("value"), not its TypeScript member (MappingType.ValueToText):
// Json<T> is T with each string enum replaced by the union of its values. Numeric enums stay,
// they accept their own numbers and no others.
type Json<T> = T extends string
  ? `${T}`
  : T extends ReadonlyArray<infer U>
    ? Array<Json<U>>
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

// Grafana leaves one place open that the generated types close: datasources keep their own keys
// on an annotation query (Prometheus: expr, step, titleFormat), and @grafana/data's
// AnnotationQuery, the type Grafana itself reads them with, adds [key: string]: any for them.
// The schema's own fields there are still checked; everything else is closed.
type OpenAnnotationQuery = AnnotationQuery & { [key: string]: unknown };
type FleetDashboard = Json<
  Omit<Dashboard, 'annotations'> & { annotations?: { list?: OpenAnnotationQuery[] } }
>;

export const dashboard: FleetDashboard =
"""


def fail(status, message):
    """Prints ``message``; returns ``status`` for sys.exit."""
    print(f"dashboard schema: {message}", file=sys.stderr)
    return status


def package_schema_version(node):
    done = subprocess.run([node, "-e", SCHEMA_VERSION_JS], cwd=TOOLS, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0 or not done.stdout.isdigit():
        sys.exit(fail(2, "cannot read defaultDashboard.schemaVersion from @grafana/schema: "
                         + done.stderr.strip()))
    return int(done.stdout)


def tsc_errors(node, source, shown, first_line):
    """Runs tsc on ``source``; returns its diagnostics with positions in the dashboard file ``shown``."""
    work = tempfile.mkdtemp(prefix="check-", dir=TOOLS)  # inside TOOLS: tsc finds node_modules
    try:
        ts_file = "dashboard.ts"  # tsc names it relative to its cwd
        with open(os.path.join(work, ts_file), "w", encoding="utf-8") as handle:
            handle.write(source)
        # --skipLibCheck: Grafana's .d.ts files are not under test, and checking them triples the time.
        done = subprocess.run(
            [node, TSC, "--noEmit", "--strict", "--skipLibCheck", "--pretty", "false",
             "--target", "es2022", "--module", "commonjs", ts_file],
            cwd=work, capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = []
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith(ts_file + "("):
            position, rest = line[len(ts_file) + 1:].split(")", 1)
            row, column = (int(number) for number in position.split(","))
            if row >= first_line:
                line = f"{shown}:{row - first_line + 1}:{column}{rest}"
            else:
                line = f"(the check's own header) line {row}:{column}{rest}"
        lines.append(line)
    if done.returncode != 0 and not lines:
        lines.append(f"tsc exited with {done.returncode} and said nothing")
    return lines


def main():
    dashboard_path = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else DASHBOARD
    shown = os.path.relpath(dashboard_path, ROOT) if dashboard_path.startswith(ROOT + os.sep) else dashboard_path
    node = shutil.which("node")
    if not node or not os.path.isfile(TSC):
        sys.exit(fail(2, f"node or {os.path.relpath(TOOLS, ROOT)} is missing: run scripts/bootstrap.sh "
                         "(it needs the npm registry once, for @grafana/schema and typescript)"))
    try:
        with open(dashboard_path, encoding="utf-8") as handle:
            text = handle.read()
        dashboard = json.loads(text)  # the literal must be JSON, not merely something tsc accepts
    except (OSError, ValueError) as exc:
        sys.exit(fail(1, f"{shown}: {exc}"))
    if not isinstance(dashboard, dict):
        sys.exit(fail(1, f"{shown}: not a JSON object"))

    problems = []
    expected = package_schema_version(node)
    if dashboard.get("schemaVersion") != expected:
        problems.append(f"schemaVersion is {dashboard.get('schemaVersion')!r}, the pinned @grafana/schema "
                        f"describes {expected}: regenerate the dashboard or change the pin (see this script)")
    first_line = HEADER.count("\n") + 1
    source = HEADER.replace("@FIRST@", str(first_line)) + text.rstrip() + ";\n"
    problems.extend(tsc_errors(node, source, shown, first_line))
    if problems:
        print("\n".join(problems), flush=True)
        sys.exit(fail(1, f"{shown} does not conform to Grafana's dashboard schema "
                         f"(@grafana/schema, schemaVersion {expected})"))
    print(f"dashboard schema: {shown} conforms to Grafana's Dashboard type "
          f"(@grafana/schema, schemaVersion {expected})")


if __name__ == "__main__":
    main()
