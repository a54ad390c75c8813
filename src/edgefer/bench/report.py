"""The comparison's files: results.json (one row per target/input), results.csv, summary.json,
plots, report.md and a self-contained report.html (plots embedded)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgefer.bench.rows import REALTIME_FPS, STUDY_ACCELERATOR, STUDY_CHIP
from edgefer.pareto import pareto_front

CSV_COLUMNS = ("target", "input", "model", "params", "macs", "artifact", "runtime", "accuracy", "accuracy_source", "n",
               "reference_accuracy", "accuracy_drop_points", "latency_s", "fps", "power_w", "energy_j", "pdp_j",
               "source", "realtime", "citations", "status", "why")
PLOTS = {
    "accuracy": "Accuracy per target (measured on each artifact; Loihi rows simulated)",
    "latency_fps": "Latency and FPS per target (dashed: the 28 FPS real-time bar)",
    "power_energy": "Power and energy per inference (log scales)",
    "accuracy_energy": "Accuracy vs energy per inference, with the Pareto front",
    "spikes_per_layer": "Loihi: spikes per image in each layer, grayscale vs edge-map input",
    "timestep_sweep": "Loihi: accuracy on validation images, energy and latency against T (the dot: the T each row "
                      "ran)",
}


def _roles() -> dict[str, type]:
    from edgefer.targets import target_classes

    return {cls.name: cls for cls in target_classes()}


def row_label(row: dict) -> str:
    """A target's name, with the input where the target runs several model roles (Loihi: gray, edges)."""
    cls = _roles().get(row["target"])
    return f"{row['target']} ({row['input']})" if cls is not None and len(cls.compare_roles) > 1 else row["target"]


def _color(row: dict) -> str:
    cls = _roles().get(row["target"])
    if cls is not None and cls.role == "neuromorphic":
        return "#d9822b"
    return "#4a7ab7" if row["source"] == "modeled" else "#3c9d5d"


def as_dicts(rows) -> list[dict]:
    return [r.to_dict() if hasattr(r, "to_dict") else r for r in rows]


def _ok(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok"]


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _plots(rows: list[dict], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    ok = _ok(rows)
    labels = [row_label(r) for r in ok]
    colors = [_color(r) for r in ok]
    written = {}
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    key = [Patch(color="#3c9d5d", label="measured here"), Patch(color="#4a7ab7", label="modeled edge device"),
           Patch(color="#d9822b", label="neuromorphic chip (simulated SNN, modeled cost)")]
    plain = FuncFormatter(lambda value, _: f"{value:g}")

    def save(fig, name):
        path = folder / f"{name}.png"
        for ax in fig.axes:
            if ax.get_yscale() == "log":
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
            if ax.get_xscale() == "log":
                ax.xaxis.set_major_formatter(plain)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written[name] = path

    fig, ax = plt.subplots(figsize=(8, 3.6))
    accuracy = [100 * r["accuracy"] for r in ok]
    ax.bar(labels, accuracy, color=colors)
    low = min(accuracy) if accuracy else 0
    ax.set_ylim(max(0, low - 10), 100.5)
    ax.set_ylabel("accuracy (%)")
    for i, value in enumerate(accuracy):
        ax.text(i, value + 0.2, f"{value:.1f}", ha="center", fontsize=8)
    ax.tick_params(axis="x", rotation=20)
    ax.legend(handles=key, fontsize=8, loc="lower left")
    save(fig, "accuracy")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar(labels, [1e3 * r["latency_s"] for r in ok], color=colors)
    left.set_yscale("log")
    left.set_ylabel("latency per image (ms, log)")
    right.bar(labels, [r["fps"] for r in ok], color=colors)
    right.axhline(REALTIME_FPS, color="red", linestyle="--", linewidth=1, label=f"{REALTIME_FPS:.0f} FPS real time")
    right.set_yscale("log")
    right.set_ylabel("frames per second (log)")
    right.legend(handles=[*key, *right.get_legend_handles_labels()[0]], fontsize=7)
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=30)
    save(fig, "latency_fps")

    powered = [r for r in ok if r.get("power_w")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    plabels = [row_label(r) for r in powered]
    pcolors = [colors[ok.index(r)] for r in powered]
    left.bar(plabels, [r["power_w"] for r in powered], color=pcolors)
    left.set_yscale("log")
    left.set_ylabel("power (W, log)")
    right.bar(plabels, [1e3 * r["energy_j"] for r in powered], color=pcolors)
    right.set_yscale("log")
    right.set_ylabel("energy per inference (mJ, log)")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=30)
    save(fig, "power_energy")

    fig, ax = plt.subplots(figsize=(6.5, 4))
    points = [(1e3 * r["energy_j"], 100 * r["accuracy"]) for r in powered]
    for (energy, acc), r, color in zip(points, powered, pcolors):
        ax.scatter(energy, acc, color=color, s=40, zorder=3)
        ax.annotate(row_label(r), (energy, acc), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted(pareto_front(points, maximise=(False, True)), key=lambda i: points[i][0])
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="black", linewidth=1, linestyle=":",
            label="Pareto front", zorder=2)
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (mJ, log)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    save(fig, "accuracy_energy")

    loihi = {row_label(r): r for r in ok if r.get("layers")}
    if loihi:
        import numpy as np

        modes = sorted(loihi)
        layer_names = {mode: [layer["layer"] for layer in loihi[mode]["layers"]] for mode in modes}
        shared = all(names == layer_names[modes[0]] for names in layer_names.values())
        # One net for both inputs: grouped bars per layer; different nets (a searched one): a panel each.
        panels = [modes] if shared else [[mode] for mode in modes]
        fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 3.6), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            names = layer_names[panel[0]]
            width = 0.8 / len(panel)
            for k, mode in enumerate(panel):
                r = loihi[mode]
                ax.bar(np.arange(len(names)) + k * width, [max(layer["spikes"], 1e-1) for layer in r["layers"]], width,
                       label=f"{mode}: {r['model']} ({r['spikes_per_image']:,.0f} spikes/image)")
            ax.set_xticks(np.arange(len(names)) + width * (len(panel) - 1) / 2, names, rotation=20)
            ax.set_yscale("log")
            ax.set_ylabel("spikes per image (log)")
            ax.legend(fontsize=8)
        save(fig, "spikes_per_layer")

    swept = [r for r in ok if r.get("timestep_sweep")]
    if swept:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for r in swept:
            sweep, label = r["timestep_sweep"], row_label(r)
            curve = sweep["accuracy_by_timestep"]
            line = axes[0].plot(range(1, len(curve) + 1), [100 * a for a in curve], label=label)[0]
            ran = r["timesteps"]
            if ran <= len(curve):
                axes[0].scatter([ran], [100 * curve[ran - 1]], color=line.get_color(), zorder=3)
            steps = [point["timesteps"] for point in sweep["points"]]
            axes[1].plot(steps, [1e3 * point["energy_j"] for point in sweep["points"]], marker="o", label=label,
                         color=line.get_color())
            axes[2].plot(steps, [1e3 * point["latency_s"] for point in sweep["points"]], marker="o", label=label,
                         color=line.get_color())
        axes[0].axvline(swept[0]["timestep_sweep"]["reference_timesteps"], color="grey", linestyle=":", linewidth=1)
        axes[0].set_ylabel("SNN accuracy, validation (%)")
        axes[1].set_ylabel("energy per image (mJ, modeled)")
        axes[2].set_ylabel("latency per image (ms, modeled)")
        for ax in axes:
            ax.set_xlabel("timesteps T")
            ax.legend(fontsize=8)
        save(fig, "timestep_sweep")
    return written


def _references(rows: list[dict]) -> dict[str, str]:
    from edgefer.targets.costmodel import citations

    known = {key: f"{entry['title']}" + (f" <{entry['url']}>" if entry.get("url") else "")
             for key, entry in citations().items()}
    used = sorted({key for r in rows for key in [*(r.get("citations") or []),
                                                 *(r.get("calibrated_to_measured") or {}).get("citations", [])]})
    return {key: known.get(key, "(no entry)") for key in used}


def timesteps_text(summary: dict, rows: list[dict]) -> str:
    """How long the SNN rows ran: the requested T, or each row's chosen T."""
    if isinstance(summary["timesteps"], int):
        return f"SNN: T = {summary['timesteps']} timesteps"
    ran = [f"{row_label(r)} T = {r['timesteps']}" for r in _ok(as_dicts(rows)) if r.get("timesteps_chosen_by")]
    return "SNN: " + (", ".join(ran) if ran else "no spiking rows") + (
        " (per net, the fewest timesteps within one point of its T=50 accuracy on its validation images)" if ran else "")


def _timestep_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        sweep = r.get("timestep_sweep") if r.get("status") == "ok" and r.get("timesteps_chosen_by") == "sweep" else None
        points = {p["timesteps"]: p for p in (sweep or {}).get("points", [])}
        reference = points.get(sweep["reference_timesteps"]) if sweep else None
        ran = points.get(r.get("timesteps"))
        if reference is None or ran is None or r["timesteps"] == sweep["reference_timesteps"]:
            continue
        lines.append(f"{row_label(r)} ran at T={r['timesteps']} instead of the study's {sweep['reference_timesteps']}: "
                     f"{100 * (1 - ran['energy_j'] / reference['energy_j']):.0f} % less modeled energy and "
                     f"{100 * (1 - ran['latency_s'] / reference['latency_s']):.0f} % less latency per image, at "
                     f"{100 * ran['accuracy']:.1f} % accuracy against {100 * reference['accuracy']:.1f} % "
                     f"({sweep['images']}).")
    return lines


def _measured_loihi_lines(rows: list[dict]) -> list[str]:
    """The Loihi rows again, priced with the per-step overhead fitted on measured Loihi boards."""
    lines, error = [], None
    for r in _ok(as_dicts(rows)):
        system = r.get("calibrated_to_measured")
        if system:
            error = system["per_operation_latency_error_holdout"]
            lines.append(f"{row_label(r)}: {1e3 * system['latency_s']:.2f} ms ({system['fps']:,.0f} FPS), "
                         f"{system['power_w']:.3f} W, {1e3 * system['energy_j']:.3f} mJ per image with host I/O "
                         f"{1e6 * system['host_io_s_per_timestep']:.0f} us per timestep and {system['static_power_w']:.3f} W "
                         f"static, against {1e3 * r['latency_s']:.3f} ms and {1e3 * r['energy_j']:.3f} mJ from the "
                         f"per-operation model in the table ({system['source']}).")
    if lines:
        lines.append(f"Davies et al. 2018's per-operation figures miss the latencies Blouw et al. 2019 measured on a Loihi "
                     f"board by {100 * error:.0f} % (median, held-out runs; `edgefer targets`, "
                     "benchmarks/loihi_validation.py): a real board adds host I/O and management-core work every "
                     "timestep, and draws about 0.1 W once a net is loaded.")
    return lines


def explain_headline(summary: dict, rows: list[dict]) -> list[str]:
    """Sentences that set our Loihi vs Coral ratios beside the study's, and say why they differ."""

    rows = as_dicts(rows)
    head = summary["headline"]
    study = head["study"]
    lines = [f"Study ({study['source']}): Loihi uses about {study['loihi_vs_coral_power']:.0f}x less power and "
             f"{study['loihi_vs_coral_energy']:.0f}x less energy per inference than the Coral Edge TPU."]
    for mode, ratio in head["loihi_vs_coral"].items():
        sides = ratio.get("sources") or {}
        # which sides were measured is said once one of them is (a device run merged with --measured)
        said = "" if "measured" not in sides.values() else (f" (Coral {sides[STUDY_ACCELERATOR]}, Loihi "
                                                            f"{sides[STUDY_CHIP]})")
        lines.append(f"Ours, {mode} input{said}: Coral draws {ratio['power_ratio']:.1f}x Loihi's power and spends "
                     f"{ratio['energy_ratio']:.2f}x its energy per inference; counting Loihi's dynamic energy only "
                     f"(no static power): {ratio['power_ratio_dynamic_only']:.1f}x power, "
                     f"{ratio['energy_ratio_dynamic_only']:.2f}x energy. Accuracy difference (Loihi - Coral): "
                     f"{ratio['accuracy_points']:+.2f} points.")
    coral = next((r for r in rows if r["target"] == STUDY_ACCELERATOR and r.get("status") == "ok"), None)
    if head["loihi_vs_coral"] and coral is not None:
        breakdown = coral.get("cost_breakdown") or {}
        fixed = sum(breakdown.get(k, 0.0) for k in ("overhead_s", "link_s"))
        static = min(r["static_power_w"] for r in rows if r["target"] == STUDY_CHIP and r.get("status") == "ok")
        measured_coral = coral.get("source") == "measured" and coral.get("power_w") is not None
        lines.append(
            "Why ours differ from the study's: "
            + ("" if measured_coral else "every power and energy figure here is modeled, none measured on the devices. ")
            + "Loihi's energy is Davies et al. 2018 Table 2 (pre-silicon per-operation figures) times our "
            f"simulated spikes, synops and neuron updates, plus static power ({static:.3f} W per chip, Blouw et al. "
            + (f"2019); Coral's is measured on {coral.get('measured_on')} ({coral['power_w']:.2f} W from "
               f"{coral.get('power_source')}, {1e3 * coral['latency_s']:.3f} ms). A 100x" if measured_coral else
               f"2019); Coral's is its active power ({coral['power_w']:.2f} W, published figures) times a latency "
               f"model in which per-invoke overhead and USB transfer take {100 * fixed / coral['latency_s']:.0f} % of "
               f"the {1e3 * coral['latency_s']:.3f} ms. A 100x")
            + f" power ratio against {coral['power_w']:.2f} W would put "
            f"Loihi at {coral['power_w'] / 100 * 1e3:.0f} mW, below the chip's own idle power, so the study's "
            "figure can only compare dynamic (above-idle) power, or a higher Coral draw than its published "
            "active figure; our dynamic-only ratios are given above for that reason.")
    loihi_models = {(r["model"], r["params"]) for r in rows if r["target"] == STUDY_CHIP and r.get("status") == "ok"}
    if coral is not None and loihi_models and any(name != coral["model"] for name, _ in loihi_models):
        lines.append("The rows compare networks as well as devices, as the study did: Coral runs "
                     f"{coral['model']} ({coral['params']:,} parameters) while Loihi runs "
                     + " and ".join(f"{name} ({params:,})" for name, params in sorted(loihi_models))
                     + ", a net without bias or pooling that a spiking chip can take.")
    edges = head.get("edges_vs_gray")
    if edges:
        lines.append(f"Edge maps vs grayscale on Loihi: accuracy {edges['accuracy_points']:+.2f} points, spikes "
                     + ("n/a (no spikes with gray input)" if edges["spikes_change"] is None else f"{100 * edges['spikes_change']:+.1f} %")
                     + f", power {100 * edges['power_change']:+.1f} %, energy "
                     f"{100 * edges['energy_change']:+.1f} % (input sparsity {edges['input_sparsity']['gray']:.2f} gray, "
                     f"{edges['input_sparsity']['edges']:.2f} edges). The study found edges raise accuracy and cut "
                     "power and energy.")
    lines += _timestep_lines(rows)
    lines.append(f"Real time (> {REALTIME_FPS:.0f} FPS): " + ("every target meets it." if head["all_realtime"] else
                                              "not met by " + ", ".join(head["not_realtime"]) + "."))
    return lines


FRONT_HEADER = ("trial", "val accuracy %", "SNN on 64 val images %", "latency ms", "power W", "energy mJ", "params",
                "MACs", "cores")


def search_text(stage: str, search: dict) -> str:
    """How the AutoML study behind a row's model ran, and what its Pareto set holds."""
    states = ", ".join(f"{count} {state}" for state, count in sorted(search["trial_states"].items()))
    reference = search["reference"]
    return (f"{stage} runs the best trial ({search['best_trial']}) of the study {search['study']} "
            f"(`{search['command']}`; trials: {states}; {search['finished_trials']} count as finished). Its Pareto "
            f"set over validation accuracy, latency and energy has {len(search['front'])} nets, priced as in the "
            f"search (modeled); the reference {reference.get('model')} scores {100 * reference['val_accuracy']:.2f} % "
            f"on the same validation images at {_fmt(reference.get('latency_s'), '.3f', 1e3)} ms and "
            f"{_fmt(reference.get('energy_j'), '.3f', 1e3)} mJ.")


def search_caption(stage: str) -> str:
    return f"{stage}: the study's trials and Pareto front"


def front_rows(search: dict) -> list[list[str]]:
    return [[str(p["trial"]), _fmt(p["val_accuracy"], ".2f", 100), _fmt(p.get("snn_accuracy"), ".1f", 100),
             _fmt(p["latency_s"], ".3f", 1e3), _fmt(p["power_w"], ".3f"), _fmt(p["energy_j"], ".3f", 1e3),
             _fmt(p["params"], ",.0f"), _fmt(p["macs"], ",.0f"), _fmt(p.get("cores"), ".0f")] for p in search["front"]]


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        if r.get("status") != "ok":
            out.append([row_label(r), r["input"], r.get("model", ""), "skipped: " + (r.get("why") or ""), *[""] * 8])
            continue
        out.append([row_label(r), r["input"], r["model"], r["artifact"],
                    f"{100 * r['accuracy']:.2f} ({r['accuracy_source']})", _fmt(r["accuracy_drop_points"], "+.2f"),
                    _fmt(r["latency_s"], ".3f", 1e3), _fmt(r["fps"], ",.0f"), _fmt(r["power_w"], ".3f"),
                    _fmt(r["energy_j"], ".4f", 1e3), r["source"], ", ".join(r.get("citations") or [])])
    return out


TABLE_HEADER = ("target", "input", "model", "artifact", "accuracy % (source)", "drop vs torch (pts)", "latency ms",
                "FPS", "power W", "energy mJ", "cost source", "citations")


def _markdown(rows: list[dict], summary: dict, plots: dict[str, Path], search_plots: dict[str, Path]) -> str:
    lines = [f"# edgefer comparison: {summary['dataset']}", "",
             f"Models: {', '.join(f'{k}: {v}' for k, v in summary['models'].items())}. Test set: each model's "
             f"held-out images (n per row). {timesteps_text(summary, rows)}. Created {summary['created']} "
             f"on {summary['machine']['cpu']} ({summary['machine']['cpus']} CPUs) in {summary['seconds']} s"
             + (f"; cached stages reused: {', '.join(summary['cached_stages'])}" if summary["cached_stages"] else "") + ".",
             "", "| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    if summary["absent_targets"]:
        lines += ["", "Not present here: " + "; ".join(f"{k} ({v})" for k, v in summary["absent_targets"].items())]
    lines += ["", "`measured`: run on this machine in the artifact's real runtime. `modeled`: our analytical cost "
              "model (edge devices, constants and validation in `edgefer targets`) or the Loihi energy model "
              "(Davies et al. 2018); never a measurement of that device. Accuracy is always computed here: on the "
              "exported artifact in its runtime, or by simulating the spiking network."]
    measured = [r for r in rows if r.get("modeled")]
    if measured:
        lines += ["", "## Measured on devices", "",
                  "| target | measured on | latency ms (modeled) | model error | power W (modeled) | power read from | "
                  "accuracy on the device |", "|---|---|---|---|---|---|---|"]
        for r in measured:
            m, error = r["modeled"], r["model_error"]
            lines.append(f"| {r['target']} | {r.get('measured_on')} | {1e3 * r['latency_s']:.3f} ({1e3 * m['latency_s']:.3f}) "
                         f"| {100 * error['latency']:+.0f} % | {_fmt(r['power_w'], '.2f')} ({_fmt(m['power_w'], '.2f')}) "
                         f"| {r.get('power_source') or '-'} | {100 * r['device_accuracy']['accuracy']:.2f} % "
                         f"(n={r['device_accuracy']['n']}) |")
    lines += ["", "## Headline", ""]
    lines += [f"- {line}" for line in explain_headline(summary, rows)]
    lines += ["", "## Plots", ""]
    lines += [f"![{PLOTS[name]}](plots/{path.name})" for name, path in plots.items()]
    measured_loihi = _measured_loihi_lines(rows)
    if measured_loihi:
        lines += ["", "## Loihi against measured boards", ""] + [f"- {line}" for line in measured_loihi]
    if summary.get("searches"):
        lines += ["", "## AutoML search"]
    for stage, search in summary.get("searches", {}).items():
        lines += ["", search_text(stage, search), "", "| " + " | ".join(FRONT_HEADER) + " |",
                  "|" + "---|" * len(FRONT_HEADER)]
        lines += ["| " + " | ".join(cells) + " |" for cells in front_rows(search)]
        if stage in search_plots:
            lines += ["", f"![{search_caption(stage)}](plots/{search_plots[stage].name})"]
    lines += ["", "## References", ""]
    lines += [f"- `{key}`: {text}" for key, text in _references(rows).items()]
    return "\n".join(lines) + "\n"


def _figure(path: Path, caption: str) -> str:
    esc = html.escape
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _html_table(header, cells_rows, css_class: str = "") -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for cells in cells_rows)
    opening = f'<table class="{css_class}">' if css_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_searches(summary: dict, search_plots: dict[str, Path]) -> str:
    parts = []
    for stage, search in summary.get("searches", {}).items():
        parts.append(f"<p>{html.escape(search_text(stage, search))}</p>{_html_table(FRONT_HEADER, front_rows(search), 'numbers')}"
                     + (_figure(search_plots[stage], search_caption(stage))
                        if stage in search_plots else ""))
    return f"<h2>AutoML search</h2>{''.join(parts)}" if parts else ""


def _html(markdown_rows: list[list[str]], summary: dict, plots: dict[str, Path], rows: list[dict],
          search_plots: dict[str, Path]) -> str:
    esc = html.escape
    figures = "".join(_figure(path, PLOTS[name]) for name, path in plots.items())
    notes = "".join(f"<li>{esc(line)}</li>" for line in explain_headline(summary, rows))
    refs = "".join(f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in _references(rows).items())
    measured_loihi = "".join(f"<li>{esc(line)}</li>" for line in _measured_loihi_lines(rows))
    absent = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in summary["absent_targets"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgefer comparison: {esc(summary['dataset'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }} th, td {{ border: 1px solid #ccc; padding: 3px 6px; }}
th {{ background: #f0f0f0; }} td {{ text-align: right; }} td:nth-child(-n+4) {{ text-align: left; }}
table.numbers td {{ text-align: right; }}
figure {{ display: inline-block; margin: 1em 1em 0 0; }} img {{ max-width: 100%; }}
figcaption {{ font-size: 13px; color: #555; }}
</style></head><body>
<h1>edgefer comparison: {esc(summary['dataset'])}</h1>
<p>Models: {esc(', '.join(f'{k}: {v}' for k, v in summary['models'].items()))}. {esc(timesteps_text(summary, rows))}.
Created {esc(summary['created'])} on {esc(str(summary['machine']['cpu']))} in {summary['seconds']} s.</p>
{_html_table(TABLE_HEADER, markdown_rows)}
<p><b>measured</b>: run here in the artifact's real runtime. <b>modeled</b>: analytical cost model with cited
constants, never a measurement of that device. Accuracy is always computed here (artifact in its runtime, or the
simulated spiking network).</p>
{f'<p>Not present here:</p><ul>{absent}</ul>' if absent else ''}
<h2>Headline</h2><ul>{notes}</ul>
<h2>Plots</h2>{figures}
{f'<h2>Loihi against measured boards</h2><ul>{measured_loihi}</ul>' if measured_loihi else ''}
{_html_searches(summary, search_plots)}
<h2>References</h2><ul>{refs}</ul>
</body></html>
"""


def write_report(rows, summary: dict, out: Path) -> dict[str, str]:
    """Every report file, all or none: rendered first into a staging folder inside ``out``, then moved
    into place, so a failure while rendering leaves the previous report whole."""
    rows = as_dicts(rows)
    out.mkdir(parents=True, exist_ok=True)
    names = {"results_json": "results.json", "results_csv": "results.csv", "summary": "summary.json",
             "report_md": "report.md", "report_html": "report.html"}
    files = {key: str(out / name) for key, name in names.items()}
    staging = Path(tempfile.mkdtemp(prefix=".report-partial-", dir=out))
    try:
        plots = _plots(rows, staging / "plots")
        # each searched model's study plot, copied so the report folder stands alone
        search_plots = {}
        for stage, search in summary.get("searches", {}).items():
            if search.get("plot"):
                search_plots[stage] = staging / "plots" / f"search_{stage}.png"
                shutil.copyfile(search["plot"], search_plots[stage])
        csv_text = io.StringIO()
        writer = csv.DictWriter(csv_text, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "citations": " ".join(r.get("citations") or [])})
        texts = {"results_json": json.dumps(rows, indent=2) + "\n", "results_csv": csv_text.getvalue(),
                 "report_md": _markdown(rows, summary, plots, search_plots),
                 "report_html": _html(table_rows(rows), summary, plots, rows, search_plots),
                 "summary": json.dumps({**summary, "files": files}, indent=2, default=str) + "\n"}
        for key, text in texts.items():
            (staging / names[key]).write_text(text, encoding="utf-8")
        final_plots = out / "plots"
        final_plots.mkdir(exist_ok=True)
        written = [*plots.values(), *search_plots.values()]
        for stale in final_plots.glob("*.png"):
            if stale.name not in {path.name for path in written}:
                stale.unlink()
        for path in written:
            os.replace(path, final_plots / path.name)
        for key in texts:
            os.replace(staging / names[key], out / names[key])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files
