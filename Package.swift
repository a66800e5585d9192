// swift-tools-version:6.2
import PackageDescription

// Module graph, the project's modules each depends on directly (one-way; the compiler enforces it,
// Docs/ARCHITECTURE.md explains it):
//   strata       → StrataServer, StrataBench, BootTrace, Union, SunRPC
//   StrataServer → NFS3, SunRPC, SunRPCClient, Union, XDR, Basics
//   StrataBench  → NFS3Client, BootTrace, NFS3, SunRPC, XDR, Basics (the load generator; the server never depends on it)
//   NFS3Client   → NFS3, SunRPC, XDR;   BootTrace → NFS3, XDR
//   SunRPCClient → SunRPC, XDR (blocking client: tests, and the server's port-111 probe at start-up)
//   SunRPC       → XDR, CTIRPC, Basics;   NFS3 → XDR;   Union → Basics (and GRDB);   Basics → nothing
//   TestSupport (Tests/TestSupport) → NFS3, for test targets only
let package = Package(
    name: "Strata",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "strata", targets: ["strata"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // A stable hash (FNV-1a) and a bounded LRU map, shared by SunRPC, Union and StrataServer.
        .target(name: "Basics"),
        .target(
            name: "XDR",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .systemLibrary(
            name: "CTIRPC",
            pkgConfig: "libtirpc",
            providers: [.apt(["libtirpc-dev"])]
        ),
        .target(
            name: "SunRPC",
            dependencies: [
                "Basics", "XDR", "CTIRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A blocking ONC RPC client for tests and benchmarks; the server uses it only to ask port 111
        // at start-up whether a system rpcbind answers.
        .target(
            name: "SunRPCClient",
            dependencies: [
                "SunRPC", "XDR",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "NFS3",
            dependencies: ["XDR", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "Union",
            dependencies: [
                "Basics",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["API.md"]
        ),
        .target(
            name: "StrataServer",
            dependencies: [
                "Basics", "XDR", "SunRPC", "SunRPCClient", "NFS3", "Union",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        .target(
            name: "NFS3Client",
            dependencies: [
                "XDR", "SunRPC", "NFS3",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // `strata bench`: the load generator's workloads (NFS3Client connections, phases and
        // reports, the boot storm, server watching).
        .target(
            name: "StrataBench",
            dependencies: [
                "NFS3Client", "BootTrace", "NFS3", "SunRPC", "XDR", "Basics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A diskless client's boot as a path-based script: recorded from a call trace, parsed,
        // replayed by any number of clients (the load generator's boot storm).
        .target(
            name: "BootTrace",
            dependencies: ["NFS3", "XDR", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .executableTarget(
            name: "strata",
            dependencies: [
                "StrataServer", "SunRPC", "Union", "BootTrace", "StrataBench",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // What the test targets share: seeded generator, scratch directories, child processes.
        .target(name: "TestSupport", dependencies: ["NFS3"], path: "Tests/TestSupport"),
        .testTarget(name: "XDRTests", dependencies: ["XDR", "TestSupport"]),
        .testTarget(name: "SunRPCTests", dependencies: ["SunRPC", "SunRPCClient", "XDR", "TestSupport"]),
        .testTarget(name: "NFS3Tests", dependencies: ["NFS3", "XDR", "TestSupport"]),
        .testTarget(name: "UnionTests", dependencies: ["Basics", "Union", "TestSupport"]),
        .testTarget(
            name: "NFS3ClientTests",
            dependencies: [
                "NFS3Client", "NFS3", "SunRPC", "XDR",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "BenchTests", dependencies: ["StrataBench"]),
        .testTarget(name: "BootTraceTests", dependencies: ["BootTrace", "NFS3", "XDR"]),
        .testTarget(
            name: "StrataServerTests",
            dependencies: ["Basics", "StrataServer", "SunRPC", "SunRPCClient", "Union", "NFS3", "XDR", "TestSupport"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "XDR", "SunRPC", "SunRPCClient", "NFS3", "NFS3Client", "BootTrace", "TestSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
