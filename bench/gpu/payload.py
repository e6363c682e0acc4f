"""Install the carried payload on a bare GPU machine (no index, no network) and wire FFmpeg.

``install`` unpacks every wheel of the payload folder (``.whl/``, made by
``bench/gpu/prepare.sh``) into a private ``site`` folder (wheels are zip files; none of ours has
scripts or compiled-on-install parts, so unpacking is installing), then gives torchcodec an
FFmpeg: torchcodec's ``libtorchcodec_core8.so`` asks the dynamic linker for ``libavutil.so.60``,
``libavcodec.so.62``, ... (FFmpeg 8 sonames); the PyAV wheel bundles exactly those FFmpeg 8
libraries (with libx264, libdav1d, ... and the NVDEC/CUVID glue) under ``av.libs/`` with
hashed file names. ``install`` adds the plain soname links next to them, so that
``LD_LIBRARY_PATH=<site>/av.libs`` makes torchcodec load them (``$ORIGIN`` of those libraries
is ``av.libs`` itself, which is also where their own hashed dependencies are).

Without a payload (the CPU dry run of the test suite) nothing is unpacked: the links are made
for the ``av`` package already installed in the running environment, in a separate folder
(``<prefix>/ffmpeg``), so the same torchcodec-on-PyAV's-FFmpeg wiring is exercised.

Prints shell ``export`` lines for ``PYTHONPATH`` and ``LD_LIBRARY_PATH`` on stdout (``run.sh``
evaluates them) and a JSON summary on stderr.

    python3 -m bench.gpu.payload install --wheels .whl --prefix /tmp/vw-gpu
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

#: FFmpeg libraries torchcodec links against (the stem of each soname).
FFMPEG_LIBS = ("libavutil", "libavcodec", "libavformat", "libavdevice", "libavfilter", "libswscale",
               "libswresample")
_HASHED = re.compile(r"^(lib[a-z0-9_]+)-[0-9a-f]{8}\.so\.(\d+)")


def unpack(wheels: list[Path], site: Path) -> list[str]:
    """Unzip ``wheels`` into ``site`` (skipped for a wheel whose record is already there)."""
    site.mkdir(parents=True, exist_ok=True)
    done = []
    for wheel in wheels:
        stamp = site / f".unpacked-{wheel.name}"
        if not stamp.exists():
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(site)
            stamp.write_text("")
        done.append(wheel.name)
    return done


def soname_links(libs_dir: Path, link_dir: Path) -> dict[str, str]:
    """``<stem>.so.<major>`` links in ``link_dir`` to the hashed FFmpeg files of ``libs_dir``."""
    link_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for f in sorted(libs_dir.iterdir()):
        m = _HASHED.match(f.name)
        if not m or m.group(1) not in FFMPEG_LIBS:
            continue
        link = link_dir / f"{m.group(1)}.so.{m.group(2)}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f.resolve() if link_dir != libs_dir else f.name)
        made[link.name] = f.name
    return made


def installed_av_libs() -> Path | None:
    """``av.libs`` of the ``av`` package importable here (without importing it), if any."""
    import importlib.util

    spec = importlib.util.find_spec("av")
    if spec is None or not spec.origin:
        return None
    libs = Path(spec.origin).parent.parent / "av.libs"
    return libs if libs.is_dir() else None


def install(wheels_dir: Path, prefix: Path, use_installed: bool) -> dict[str, Any]:
    """Unpack the payload (or use the installed packages) and make the FFmpeg links."""
    start = time.perf_counter()
    wheels = sorted(wheels_dir.glob("*.whl")) if wheels_dir.is_dir() else []
    summary: dict[str, Any] = {"wheels_dir": str(wheels_dir), "prefix": str(prefix)}
    paths: list[str] = []
    lib_paths: list[str] = []
    if wheels and not use_installed:
        site = prefix / "site"
        summary["unpacked"] = unpack(wheels, site)
        paths.append(str(site))
        libs = site / "av.libs"
        if libs.is_dir():
            summary["ffmpeg_links"] = soname_links(libs, libs)
            lib_paths.append(str(libs))
    else:
        summary["unpacked"] = []
        summary["note"] = ("no payload unpacked: using the packages installed in this environment"
                           if use_installed or not wheels else "")
        libs = installed_av_libs()
        if libs is not None:
            link_dir = prefix / "ffmpeg"
            summary["ffmpeg_links"] = soname_links(libs, link_dir)
            lib_paths += [str(link_dir), str(libs)]
    if not summary.get("ffmpeg_links"):
        summary["ffmpeg_links"] = {}
        summary["ffmpeg_note"] = "no PyAV FFmpeg found: torchcodec uses whatever FFmpeg the system has"
    summary["pythonpath"] = paths
    summary["ld_library_path"] = lib_paths
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary


def exports(summary: dict[str, Any]) -> str:
    """Shell lines that put the unpacked packages and the FFmpeg libraries first."""
    lines = []
    for var, key in (("PYTHONPATH", "pythonpath"), ("LD_LIBRARY_PATH", "ld_library_path")):
        if summary[key]:
            joined = ":".join(summary[key])
            lines.append(f'export {var}={shlex.quote(joined)}"${{{var}:+:${var}}}"')
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``install`` (see the module documentation)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["install"])
    p.add_argument("--wheels", type=Path, default=Path(".whl"))
    p.add_argument("--prefix", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vw-gpu")
    p.add_argument("--use-installed", action="store_true",
                   help="unpack nothing: the packages of the running environment (CPU dry run)")
    args = p.parse_args(argv)
    summary = install(args.wheels, args.prefix, args.use_installed)
    print(json.dumps(summary), file=sys.stderr)
    print(exports(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
