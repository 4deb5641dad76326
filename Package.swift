// swift-tools-version:5.9
// Tandem: distributed data-parallel training of transformers on CPU clusters over MPI.
// Module graph (one way; README "Architecture"):
//   TandemTensor <- TandemKernels <- TandemAutograd <- TandemNN <- TandemModels   (numerics; TandemKernels
//     also uses the C targets CKernels, for loops Swift's SIMD types vectorise badly, CBF16Gemm, and
//     CSmallGemm over libxsmm for attention's per-head products)
//   TandemData (with the CImageCodecs C shim), TandemCollectives (CMPI) and TandemCheckpoint depend only
//     on TandemTensor
//   TandemTraining ties them together: the typed config, the model-family registry (Families/), the
//     trainer, optimizers, checkpointing and resume
//   TandemTools (benchmarks, `tandem debug`, `tandem plot`) sits on TandemTraining
//   the `tandem` executable parses arguments and calls TandemTraining and TandemTools.
import PackageDescription

let package = Package(
    name: "Tandem",
    // No `platforms:` entry: the package is Linux-only (the shared gradient arenas map files in /dev/shm
    // through Glibc), so it claims no Apple platform.
    products: [
        .executable(name: "tandem", targets: ["tandem"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // SHA-256 of checkpoints and shards: 5x the hand-written Swift one (docs/performance.md).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // Audio decoding (libsndfile) and resampling (libsamplerate) for `tandem prepare-audio`.
        .systemLibrary(name: "CAudio", path: "Sources/CAudio", pkgConfig: "sndfile",
                       providers: [.apt(["libsndfile1-dev", "libsamplerate0-dev"])]),
        // libpng/libjpeg report errors by longjmp, so their calls live in this C target (see its header).
        .target(name: "CImageCodecs", path: "Sources/CImageCodecs",
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg"), .linkedLibrary("z")]),
        // bf16 matrix products on AVX512_BF16 (train.precision: bf16). Its AVX-512 functions carry target
        // attributes and sit behind a CPU check, so the target needs no -m flags and a CPU without
        // AVX512_BF16 gets an error, not SIGILL; -O3 also in debug builds, where tests call it.
        .target(name: "CBF16Gemm", path: "Sources/CBF16Gemm", cSettings: [.unsafeFlags(["-O3"])]),
        // Loops that need vector square roots (AdamW): -fno-math-errno lets sqrtf vectorise, and
        // -ffp-contract=off keeps every multiply and add separately rounded, as in the Swift references.
        // panel_gemm.c (recurrent step products) fuses on purpose, with FMA intrinsics (see the file).
        .target(name: "CKernels", path: "Sources/CKernels",
                cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=off"])]),
        // libxsmm's JIT kernels for attention's per-head fp32 products (`SmallGemm`; docs/performance.md,
        // "libxsmm and oneDNN against OpenBLAS and our bf16 GEMM"). libxsmm-dev ships a static libxsmm.a
        // that calls BLAS (sgemm_) for what it does not generate: OpenBLAS provides it.
        .systemLibrary(name: "CXSMM", path: "Sources/CXSMM", pkgConfig: "libxsmm", providers: [.apt(["libxsmm-dev"])]),
        .target(name: "CSmallGemm", dependencies: ["CXSMM", "CBLAS"], path: "Sources/CSmallGemm",
                cSettings: [.unsafeFlags(["-O3"])],
                linkerSettings: [.linkedLibrary("xsmm"), .linkedLibrary("openblas")]),
        .target(name: "TandemTensor", dependencies: ["CBLAS", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "TandemKernels", dependencies: ["TandemTensor", "CBLAS", "CBF16Gemm", "CKernels", "CSmallGemm"]),
        .target(name: "TandemAutograd", dependencies: ["TandemTensor", "TandemKernels"]),
        .target(name: "TandemNN", dependencies: ["TandemTensor", "TandemKernels", "TandemAutograd"]),
        .target(name: "TandemModels", dependencies: ["TandemTensor", "TandemKernels", "TandemAutograd", "TandemNN"]),
        .target(name: "TandemData", dependencies: ["TandemTensor", "CImageCodecs", "CAudio"]),
        .target(name: "TandemCollectives", dependencies: ["TandemTensor", "CMPI"]),
        .target(name: "TandemCheckpoint", dependencies: ["TandemTensor"]),
        .target(name: "TandemTraining", dependencies: [
            "TandemTensor", "TandemKernels", "TandemAutograd", "TandemNN", "TandemModels",
            "TandemData", "TandemCollectives", "TandemCheckpoint",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // Benchmarks, `tandem debug` and `tandem plot`: tools around training, not part of it.
        .target(name: "TandemTools", dependencies: [
            "TandemTensor", "TandemKernels", "TandemData", "TandemCollectives", "TandemCheckpoint", "TandemTraining",
        ]),
        .executableTarget(name: "tandem", dependencies: [
            "TandemTraining", "TandemTools",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "tandem-mpi-tests", dependencies: ["TandemCollectives", "TandemData", "TandemTraining"],
                          path: "Tests/MPITests"),
        .target(name: "TandemTestSupport", dependencies: ["TandemTensor"], path: "Tests/TandemTestSupport"),
        .testTarget(name: "TandemTensorTests", dependencies: ["TandemTensor", "TandemTestSupport"]),
        .testTarget(name: "TandemKernelsTests", dependencies: ["TandemKernels", "TandemTestSupport"]),
        .testTarget(name: "TandemAutogradTests", dependencies: ["TandemAutograd", "TandemKernels", "TandemNN", "TandemTestSupport"]),
        .testTarget(name: "TandemNNTests", dependencies: ["TandemNN", "TandemTestSupport"]),
        .testTarget(name: "TandemDataTests", dependencies: ["TandemData", "TandemTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "TandemCollectivesTests", dependencies: ["TandemCollectives", "CMPI", "TandemTestSupport"]),
        .testTarget(name: "TandemCheckpointTests", dependencies: ["TandemCheckpoint", "TandemTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "TandemModelsTests", dependencies: ["TandemModels", "TandemTraining", "TandemTools", "TandemTestSupport"],
                    exclude: ["Fixtures"]),
        .target(name: "CMallocCounter", path: "Tests/CMallocCounter"),
        .testTarget(name: "TandemTrainingTests", dependencies: ["TandemTraining", "TandemTools", "TandemTestSupport", "CMallocCounter"]),
        .testTarget(name: "TandemToolsTests", dependencies: ["TandemTools", "TandemTestSupport"]),
    ]
)
