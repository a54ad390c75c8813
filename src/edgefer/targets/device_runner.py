"""Measure an exported edgefer artifact on the device itself: copied into every bundle as
``run_on_device.py`` by ``edgefer export --bundle``.

Needs only Python 3.6+, numpy and the device's own runtime (LiteRT / tflite_runtime, with the Edge TPU
delegate for a Coral; onnxruntime, with TensorRT or CUDA where present; OpenVINO). It must not import
edgefer or torch: a Jetson Nano runs Python 3.6-3.8 and has neither.

    python3 run_on_device.py                       # latency, accuracy, device identity
    python3 run_on_device.py --tegrastats          # + power from tegrastats (Jetson)
    python3 run_on_device.py --hwmon /sys/class/hwmon/hwmon2   # + power from an INA219/INA226/INA260
    python3 run_on_device.py --power-w 6.1 --idle-w 2.9        # + power read off a USB meter

Writes measurement.json (``source: measured``) beside this script, or where --out says.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time

EXIT_USAGE = 2
INSTALL = {
    "tflite": "pip install tflite-runtime (or ai-edge-litert); for a Coral also the Edge TPU runtime "
              "libedgetpu1-std from https://coral.ai/software/",
    "onnx": "pip install onnxruntime (Jetson: NVIDIA's onnxruntime-gpu wheel for your JetPack)",
    "openvino-ir": "pip install openvino",
}


class RunnerError(Exception):
    """A problem the user can fix (a missing runtime, a bad file): one line, exit 2."""


# --- power sources ------------------------------------------------------------------------------------
TEGRASTATS_RAILS = ("VDD_IN", "POM_5V_IN")  # total board input: Orin / Xavier / TX2 spell it VDD_IN, Nano POM_5V_IN


def parse_tegrastats(line):
    """Board input power in watts from one tegrastats line, or None. tegrastats prints each rail as
    ``NAME current/average`` in mW (``VDD_IN 5012mW/4980mW`` on JetPack 5-6, ``POM_5V_IN 2451/2451``
    on the Nano's JetPack 4)."""
    for rail in TEGRASTATS_RAILS:
        match = re.search(r"\b" + rail + r"\s+(\d+)(?:mW)?/(\d+)(?:mW)?", line)
        if match:
            return int(match.group(1)) / 1000.0
    return None


def read_hwmon(folder):
    """Power in watts from a Linux hwmon device (INA219/INA226/INA260 drivers): ``power1_input`` in
    microwatts, else ``in1_input`` (mV) x ``curr1_input`` (mA)."""
    power = os.path.join(folder, "power1_input")
    if os.path.exists(power):
        with open(power) as handle:
            return int(handle.read().strip()) / 1e6
    volts, amps = os.path.join(folder, "in1_input"), os.path.join(folder, "curr1_input")
    if os.path.exists(volts) and os.path.exists(amps):
        with open(volts) as v, open(amps) as a:
            return int(v.read().strip()) / 1000.0 * int(a.read().strip()) / 1000.0
    raise RunnerError("{}: no power1_input, nor in1_input and curr1_input (not a power monitor)".format(folder))


class PowerSampler(object):
    """Samples a power source on a thread while the timed runs go on."""

    def __init__(self, read, interval_s=0.05):
        self.read, self.interval_s, self.samples = read, interval_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)
        self._thread.daemon = True

    def _loop(self):
        while not self._stop.is_set():
            value = self.read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


class Tegrastats(object):
    """tegrastats as a subprocess; the latest board power it printed."""

    def __init__(self, interval_ms=50):
        try:
            self.process = subprocess.Popen(["tegrastats", "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                            universal_newlines=True)
        except OSError:
            raise RunnerError("tegrastats not found: it comes with JetPack (run on the Jetson, maybe with sudo)")
        self.latest = None
        self._thread = threading.Thread(target=self._read)
        self._thread.daemon = True
        self._thread.start()

    def _read(self):
        for line in self.process.stdout:
            value = parse_tegrastats(line)
            if value is not None:
                self.latest = value

    def read(self):
        return self.latest

    def close(self):
        self.process.terminate()


def power_source(args):
    """(a function returning watts or None, a description) for the chosen source, or (None, None)."""
    if args.tegrastats:
        stats = Tegrastats()
        time.sleep(0.3)
        return stats.read, "tegrastats board input ({})".format("/".join(TEGRASTATS_RAILS))
    if args.hwmon:
        read_hwmon(args.hwmon)  # fail now, not on the sampling thread
        return (lambda: read_hwmon(args.hwmon)), "hwmon {}".format(args.hwmon)
    return None, None


# --- runtimes ------------------------------------------------------------------------------------------
def _tflite(path, threads, target, cpu_only=False):
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate
        runtime = "tflite_runtime"
    except ImportError:
        try:
            from ai_edge_litert.interpreter import Interpreter, load_delegate
            runtime = "ai_edge_litert"
        except ImportError:
            raise RunnerError("no TFLite runtime: " + INSTALL["tflite"])
    delegates, delegate = [], None
    if target == "coral" and not cpu_only:
        import ctypes

        try:
            ctypes.CDLL("libedgetpu.so.1")  # checked first: a failed load_delegate leaves a broken object behind
            delegates = [load_delegate("libedgetpu.so.1")]
            delegate = "libedgetpu.so.1"
        except (ValueError, OSError):
            raise RunnerError("the Edge TPU delegate libedgetpu.so.1 did not load (is the Coral plugged in? "
                              "install libedgetpu1-std from https://coral.ai/software/; --cpu runs the same "
                              "int8 file on the CPU instead)")
    interpreter = Interpreter(model_path=path, num_threads=threads, experimental_delegates=delegates or None)
    interpreter.allocate_tensors()
    given, returned = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x):
        import numpy as np

        if given["dtype"] != np.float32:  # full-integer model: quantise the input, dequantise the logits
            scale, zero = given["quantization"]
            x = np.clip(np.round(x / scale) + zero, np.iinfo(given["dtype"]).min, np.iinfo(given["dtype"]).max)
        interpreter.set_tensor(given["index"], x.astype(given["dtype"]))
        interpreter.invoke()
        out = interpreter.get_tensor(returned["index"])
        if returned["dtype"] != np.float32:
            scale, zero = returned["quantization"]
            return (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32)

    version = _version(runtime)
    return run, {"runtime": runtime, "version": version, "delegate": delegate}


def _onnx(path, threads, target, cpu_only=False):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RunnerError("no onnxruntime: " + INSTALL["onnx"])
    available = ort.get_available_providers()
    providers = [] if cpu_only else [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    providers.append("CPUExecutionProvider")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=providers)
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), {"runtime": "onnxruntime", "version": ort.__version__,
                                                         "delegate": session.get_providers()[0]}


def _openvino(path, threads, target, cpu_only=False):
    device = "CPU"  # the NCS2's MYRIAD plugin left OpenVINO in 2023.0: its IR runs on the host CPU
    try:
        import openvino as ov
    except ImportError:
        raise RunnerError("no OpenVINO: " + INSTALL["openvino-ir"])
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads} if threads and device == "CPU" else {}
    compiled = core.compile_model(core.read_model(path), device, config)
    return (lambda x: compiled(x)[0]), {"runtime": "openvino", "version": ov.__version__, "delegate": device}


RUNTIMES = {"tflite": _tflite, "onnx": _onnx, "openvino-ir": _openvino}


def _version(module):
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return None


# --- the measurement -----------------------------------------------------------------------------------
def device_identity():
    info = {"machine": platform.machine(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}
    for key, path in (("model", "/proc/device-tree/model"), ("jetpack", "/etc/nv_tegra_release")):
        if os.path.exists(path):
            with open(path, "rb") as handle:
                info[key] = handle.read().decode("utf-8", "replace").strip("\x00\n ")
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.lower().startswith(("model name", "hardware"))]
        if names:
            info["cpu"] = names[0]
    return info


def percentile(ordered, q):
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def measure(bundle, args):
    import numpy as np

    with open(os.path.join(bundle, "bundle.json")) as handle:
        manifest = json.load(handle)
    artifact_path = os.path.join(bundle, manifest["artifact"]["file"])
    if sha256(artifact_path) != manifest["artifact"]["sha256"]:
        raise RunnerError("{}: the artifact does not match the bundle's digest (changed or damaged)".format(artifact_path))
    fmt = manifest["artifact"]["format"]
    if fmt not in RUNTIMES:
        raise RunnerError("artifact format {!r} has no runner here".format(fmt))
    pinned = None
    if args.threads and hasattr(os, "sched_setaffinity"):
        # the runtime's threads on as many cores, chosen once: timings do not wander between cores
        pinned = sorted(os.sched_getaffinity(0))[:args.threads]
        os.sched_setaffinity(0, pinned)
    run, runtime = RUNTIMES[fmt](artifact_path, args.threads, manifest["target"], args.cpu)
    with np.load(os.path.join(bundle, manifest["testset"]["file"])) as data:
        inputs, labels = data["inputs"].astype(np.float32), data["labels"]
    read_power, how = power_source(args)
    idle = []
    if read_power is not None:
        with PowerSampler(read_power) as sampler:
            time.sleep(args.idle_s)
        idle = sampler.samples
    correct = sum(int(np.argmax(run(x[None])) == label) for x, label in zip(inputs, labels))
    sample = inputs[:1]
    for _ in range(args.warmup):
        run(sample)
    seconds = []
    active = []
    sampler = PowerSampler(read_power) if read_power is not None else None
    if sampler:
        sampler.__enter__()
    try:
        for _ in range(args.runs):
            start = time.perf_counter()
            run(sample)
            seconds.append(time.perf_counter() - start)
    finally:
        if sampler:
            sampler.__exit__()
            active = sampler.samples
    ordered = sorted(seconds)
    latency = statistics.median(ordered)
    power = {"source": None}
    if read_power is not None and active:
        power = {"source": how, "active_w": statistics.mean(active), "idle_w": statistics.mean(idle) if idle else None,
                 "samples_active_w": active, "samples_idle_w": idle}
    elif args.power_w is not None:
        power = {"source": "typed by the user (--power-w{})".format(", --idle-w" if args.idle_w is not None else ""),
                 "active_w": args.power_w, "idle_w": args.idle_w}
    if power.get("active_w") is not None:
        power["energy_j"] = power["active_w"] * latency
        if power.get("idle_w") is not None:
            power["dynamic_energy_j"] = (power["active_w"] - power["idle_w"]) * latency
    return {
        "source": "measured", "format": "edgefer-measurement/1", "target": manifest["target"],
        "model": manifest["model"], "model_digest": manifest["model_digest"],
        "artifact": {"file": manifest["artifact"]["file"], "format": fmt, "precision": manifest["artifact"]["precision"],
                     "sha256": manifest["artifact"]["sha256"]},
        "runtime": runtime, "cpu_only": bool(args.cpu), "threads": args.threads, "pinned_cpus": pinned,
        "warmup": args.warmup,
        "runs": args.runs, "batch": 1,
        "latency_s": {"median": latency, "p90": percentile(ordered, 0.90), "p99": percentile(ordered, 0.99),
                      "mean": statistics.mean(ordered)},
        "accuracy": correct / float(len(labels)), "n": int(len(labels)), "power": power, "device": device_identity(),
        "seconds": seconds, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed runs at batch 1 (>= 200)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the runtime (recorded)")
    parser.add_argument("--tegrastats", action="store_true", help="read power from tegrastats (Jetson)")
    parser.add_argument("--hwmon", help="a /sys/class/hwmon/hwmonN folder of an INA219/INA226/INA260")
    parser.add_argument("--power-w", type=float, help="active power read off a meter during the run (W)")
    parser.add_argument("--idle-w", type=float, help="idle power read off the meter (W), for dynamic energy")
    parser.add_argument("--idle-s", type=float, default=2.0, help="seconds of idle power sampling before the run")
    parser.add_argument("--cpu", action="store_true", help="the device's CPU only: no Edge TPU delegate, no "
                        "TensorRT / CUDA provider (a check run, or a host without the accelerator)")
    parser.add_argument("--out", help="measurement file (default: measurement.json beside this script)")
    args = parser.parse_args(argv)
    bundle = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(bundle, "measurement.json")
    try:
        if args.runs < 200:
            raise RunnerError("--runs must be at least 200")
        result = measure(bundle, args)
    except RunnerError as exc:
        sys.stderr.write("error: {}\n".format(exc))
        return EXIT_USAGE
    with open(out + ".tmp", "w") as handle:
        json.dump(result, handle, indent=1)
    os.replace(out + ".tmp", out)
    print("{target} {fmt} {precision}: median {ms:.3f} ms (p99 {p99:.3f}), accuracy {acc:.4f} on n={n}{power}; wrote {out}".format(
        target=result["target"], fmt=result["artifact"]["format"], precision=result["artifact"]["precision"],
        ms=1e3 * result["latency_s"]["median"], p99=1e3 * result["latency_s"]["p99"], acc=result["accuracy"],
        n=result["n"], out=out,
        power="" if result["power"].get("active_w") is None else ", {:.2f} W ({})".format(
            result["power"]["active_w"], result["power"]["source"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
