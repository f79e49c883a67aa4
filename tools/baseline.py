"""A plain scikit-learn baseline for a tools/realdata.py set, on the same split that mlpipe used.

    python tools/baseline.py PROCESSED_DIR RAW --set NAME [--split val]

PROCESSED_DIR holds mlpipe's manifest.csv (id, source_id, path, target, split, aug_tag, modality, meta). Only the
originals (aug_tag ending in '/orig') are used: the model is fitted on the train split's and scored on `--split`'s.
RAW is realdata.py's OUT_DIR (or the set's own folder, or for a table its CSV file). The features always come from the
raw files, joined on `source_id`: a folder tree's relative path, or a table's 0-based row number. mlpipe's processed
files are never read. Prints one JSON line of metrics.

| set layout           | baseline                                                                                       |
|----------------------|------------------------------------------------------------------------------------------------|
| table, classification | HistGradientBoostingClassifier (strings ordinal-encoded, as categorical features; NaN as is) |
| table, regression    | Ridge on one-hot + standardised + median-imputed features; HistGradientBoostingRegressor       |
| table, text          | TfidfVectorizer (1-2 grams, sublinear tf) + LogisticRegression                                 |
| folder, image        | Pillow: onto white, RGB, 32x32, flattened: standardised + LogisticRegression; RandomForest (rf_) |
| folder, audio        | soundfile: mono, 16 kHz, first second, 64-band log spectrum, standardised + LogisticRegression |
"""
import argparse, json, math, sys
from pathlib import Path
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata import SETS

SEED = 0
IMAGE_SIDE = 32
AUDIO_RATE = 16000  # Hz; the first second is used, zero-padded
AUDIO_FRAME, AUDIO_HOP, AUDIO_BANDS = 512, 256, 64

def read_manifest(processed_dir) -> pd.DataFrame:
    "The original (un-augmented) rows of mlpipe's manifest, one per source_id."
    path = Path(processed_dir) / "manifest.csv"
    if not path.is_file(): raise FileNotFoundError(f"{path} not found: run mlpipe augment first")
    m = pd.read_csv(path, dtype=str, keep_default_na=False)
    m = m[m["aug_tag"].str.endswith("/orig")]
    return m.drop_duplicates("source_id").reset_index(drop=True)

def raw_root(raw, set_name) -> Path:
    "The set's folder (folder sets) or CSV file (tables) from RAW, which may be realdata's OUT_DIR or the set itself."
    raw, spec = Path(raw), SETS[set_name]
    if (raw / set_name).is_dir(): raw = raw / set_name
    if spec["layout"] == "table" and raw.is_dir(): raw = raw / spec["file"]
    if not raw.exists(): raise FileNotFoundError(f"raw data {raw} not found: run tools/realdata.py first")
    return raw

def _classification(y_true, y_pred) -> dict:
    return {"accuracy": accuracy_score(y_true, y_pred), "macro_f1": f1_score(y_true, y_pred, average="macro")}

def _logreg(X_tr, y_tr, X_ev, y_ev) -> dict:
    "Standardised features + LogisticRegression: accuracy and macro-F1."
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_tr, y_tr)
    return {"model": "logistic_regression", **_classification(y_ev, model.predict(X_ev))}

# --- tables ----------------------------------------------------------------------------------------------------------
def _table_rows(csv_path: Path, manifest: pd.DataFrame, keep_na: bool) -> pd.DataFrame:
    "The raw table's rows in manifest order, with the manifest's split; source_id is the 0-based row number."
    df = pd.read_csv(csv_path, keep_default_na=keep_na)
    rows = manifest["source_id"].astype(int)
    if rows.max() >= len(df): raise ValueError(f"manifest row {rows.max()} is past the end of {csv_path} ({len(df)} rows)")
    return df.iloc[rows.to_numpy()].assign(_split=manifest["split"].to_numpy()).reset_index(drop=True)

def _ordinal(X_tr: pd.DataFrame, X_ev: pd.DataFrame):
    "Strings to category codes fitted on train (unknown and missing values stay NaN); the mask of those columns."
    from sklearn.preprocessing import OrdinalEncoder
    cat = [c for c in X_tr.columns if not pd.api.types.is_numeric_dtype(X_tr[c])]
    X_tr, X_ev = X_tr.astype({c: object for c in cat}), X_ev.astype({c: object for c in cat})
    if cat:
        enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan).fit(X_tr[cat])
        X_tr[cat], X_ev[cat] = enc.transform(X_tr[cat]), enc.transform(X_ev[cat])
    return X_tr.astype(float), X_ev.astype(float), [c in cat for c in X_tr.columns]

def _table_classification(tr, ev, target) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    X_tr, X_ev, mask = _ordinal(tr.drop(columns=target), ev.drop(columns=target))
    model = HistGradientBoostingClassifier(categorical_features=mask, random_state=SEED).fit(X_tr, tr[target])
    majority = tr[target].mode().iloc[0]
    return {"model": "hist_gradient_boosting", **_classification(ev[target], model.predict(X_ev)),
            "majority_class": majority, "majority_accuracy": float((ev[target] == majority).mean())}

def _table_regression(tr, ev, target) -> dict:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    X_tr, X_ev, y_tr, y_ev = tr.drop(columns=target), ev.drop(columns=target), tr[target], ev[target]
    cat = [c for c in X_tr.columns if not pd.api.types.is_numeric_dtype(X_tr[c])]
    num = [c for c in X_tr.columns if c not in cat]
    ridge = make_pipeline(ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), cat)]),
        Ridge()).fit(X_tr, y_tr)
    pred = ridge.predict(X_ev)
    Xo_tr, Xo_ev, mask = _ordinal(X_tr, X_ev)
    hgb = HistGradientBoostingRegressor(categorical_features=mask, random_state=SEED).fit(Xo_tr, y_tr)
    return {"model": "ridge", "r2": r2_score(y_ev, pred), "rmse": math.sqrt(mean_squared_error(y_ev, pred)),
            "mae": mean_absolute_error(y_ev, pred), "hgb_r2": r2_score(y_ev, hgb.predict(Xo_ev))}

def _text(tr, ev, target, text_col) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=2000))
    model.fit(tr[text_col], tr[target])
    return {"model": "tfidf_logistic_regression", **_classification(ev[target], model.predict(ev[text_col]))}

# --- folders ---------------------------------------------------------------------------------------------------------
def image_features(path: Path) -> np.ndarray:
    "The image composited onto white, as RGB, resized to IMAGE_SIDE x IMAGE_SIDE, flattened to [0, 1]."
    from PIL import Image
    with Image.open(path) as im:
        rgba = im.convert("RGBA")  # also turns a palette's transparent index and LA's alpha into alpha
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    img = Image.alpha_composite(white, rgba).convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32).ravel() / 255

def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    "`x` resampled from `rate` to AUDIO_RATE: scipy's polyphase filter, or numpy's FFT where scipy is absent."
    if rate == AUDIO_RATE: return x
    try:
        from scipy.signal import resample_poly
        g = math.gcd(AUDIO_RATE, rate)
        return resample_poly(x, AUDIO_RATE // g, rate // g)
    except ImportError:  # band-limited: the spectrum zero-padded or cut to the new length
        n = round(len(x) * AUDIO_RATE / rate)
        return np.fft.irfft(np.fft.rfft(x), n) * n / len(x)

def audio_features(path: Path) -> np.ndarray:
    "Mono, AUDIO_RATE, the first second zero-padded; log of the frame-averaged power in AUDIO_BANDS linear bands."
    import soundfile as sf
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = _resample(x.mean(axis=1), rate)[:AUDIO_RATE]
    x = np.pad(x, (0, AUDIO_RATE - len(x)))
    starts = range(0, AUDIO_RATE - AUDIO_FRAME + 1, AUDIO_HOP)
    frames = np.stack([x[s:s + AUDIO_FRAME] for s in starts]) * np.hanning(AUDIO_FRAME)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    return np.log(np.array([b.mean() for b in np.array_split(power, AUDIO_BANDS)]) + 1e-10)

def _folder(root: Path, manifest: pd.DataFrame, split: str, features) -> dict:
    "Features of each original read from `root`/source_id; the target is the manifest's (the class folder)."
    X = np.stack([features(root / sid) for sid in manifest["source_id"]])
    tr, ev = (manifest["split"] == "train").to_numpy(), (manifest["split"] == split).to_numpy()
    y = manifest["target"].to_numpy()
    res = _logreg(X[tr], y[tr], X[ev], y[ev])
    if features is image_features:  # pixels: a random forest as well, the usual non-linear baseline on them
        from sklearn.ensemble import RandomForestClassifier
        rf = RandomForestClassifier(n_estimators=300, random_state=SEED, n_jobs=1).fit(X[tr], y[tr])
        res = {**res, "model": "logistic_regression, random_forest",
               **{f"rf_{k}": v for k, v in _classification(y[ev], rf.predict(X[ev])).items()}}
    return res

def baseline(
    processed_dir,  # mlpipe's processed folder, holding manifest.csv
    raw,  # realdata.py's OUT_DIR, or the set's folder or CSV file
    set_name,  # A name in realdata.SETS
    split="val",  # The split to score on
) -> dict:
    "Fit the set's baseline on the train split's originals and score it on `split`'s; return the metrics."
    if set_name not in SETS: raise ValueError(f"unknown set {set_name!r}; known: {', '.join(SETS)}")
    spec, root, manifest = SETS[set_name], raw_root(raw, set_name), read_manifest(processed_dir)
    counts = manifest["split"].value_counts()
    for s in ("train", split):
        if not counts.get(s): raise ValueError(f"the manifest has no original rows in split {s!r}")
    head = {"set": set_name, "split": split, "n_train": int(counts["train"]), "n_eval": int(counts[split])}
    if spec["layout"] == "folder":
        res = _folder(root, manifest, split, image_features if spec["modality"] == "image" else audio_features)
    else:
        text_col = spec.get("text_col")
        rows = _table_rows(root, manifest, keep_na=text_col is None)  # a text "NA" is a word, not a missing value
        tr, ev = (rows[rows["_split"] == s].drop(columns="_split") for s in ("train", split))
        target = spec["target"]
        if text_col: res = _text(tr, ev, target, text_col)
        elif spec["task"] == "regression": res = _table_regression(tr, ev, target)
        else: res = _table_classification(tr, ev, target)
    return head | {k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v for k, v in res.items()}

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="scikit-learn baseline on mlpipe's split of a tools/realdata.py set")
    p.add_argument("processed_dir", help="mlpipe's processed folder (holds manifest.csv)")
    p.add_argument("raw", help="realdata.py's OUT_DIR, or the set's folder or CSV file")
    p.add_argument("--set", required=True, choices=list(SETS), dest="set_name")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    args = p.parse_args(argv)
    try: res = baseline(args.processed_dir, args.raw, args.set_name, args.split)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0

if __name__ == "__main__":
    sys.exit(main())
