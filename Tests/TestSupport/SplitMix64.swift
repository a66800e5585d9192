/// A small deterministic generator (SplitMix64, Steele et al. 2014) so that randomized tests
/// replay from the seed they print.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    /// A fresh random seed, printed as "`label` seed N" so that a failing run can be replayed with it.
    public static func printedSeed(_ label: String) -> UInt64 {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("\(label) seed \(seed)")
        return seed
    }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = self.state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
