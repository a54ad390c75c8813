"""The Loihi cost model against measured Loihi 1 runs (Blouw et al. 2019 and its repository's power logs):
predicted vs measured latency per inference and running power, with the chip's constants (Davies et al. 2018
per-operation figures, as compare uses them) and with host I/O time and static power fitted on the fit points.

    python benchmarks/loihi_validation.py

Writes src/edgefer/targets/devices/loihi_validation.json (what `edgefer targets` shows; tests/test_loihi_validation.py
checks it is current) and runs/bench/loihi_validation.json; prints a table.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgefer.snn.validation import validate
from edgefer.targets.devices.loihi import VALIDATION_FILE


def main() -> None:
    result = validate()
    text = json.dumps(result, indent=2) + "\n"
    VALIDATION_FILE.write_text(text)
    out = Path("runs/bench/loihi_validation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    table = Table("run", "role", "cores", "latency ms: measured", "modeled", "calibrated", "power W: measured", "modeled",
                  "calibrated", title=f"Loihi 1: modeled vs measured (firing rate assumed {result['assumed_firing_rate']})")
    for r in result["rows"]:
        table.add_row(r["name"], r["role"], str(r["cores"]), f"{1e3 * r['measured_latency_s']:.2f}",
                      f"{1e3 * r['default_latency_s']:.3f}", f"{1e3 * r['calibrated_latency_s']:.2f}",
                      f"{r['measured_power_w']:.4f}", f"{r['default_power_w']:.4f}", f"{r['calibrated_power_w']:.4f}")
    console = Console(width=160)
    console.print(table)
    pct = lambda v: "-" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    for setting in ("default", "calibrated"):
        console.print(f"{setting}: latency MdAPE fit {pct(result[f'{setting}_latency_mdape_fit'])}, held-out "
                      f"{pct(result[f'{setting}_latency_mdape_holdout'])}; power MdAPE fit "
                      f"{pct(result[f'{setting}_power_mdape_fit'])}, held-out {pct(result[f'{setting}_power_mdape_holdout'])}")
    c = result["calibrated"]
    console.print(f"fitted on {result['n_fit']} fit points: host I/O {1e6 * c['host_io_s_per_timestep']:.0f} us per timestep, "
                  f"static power {c['static_power_w']:.4f} W; wrote {VALIDATION_FILE} and {out}")


if __name__ == "__main__":
    main()
