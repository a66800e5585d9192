/// What this binary is: `strata --version` and the `strata_build_info` metric.
public enum StrataBuild {
    public static let version = "0.2.0"

    /// The compiler that built it.
    public static var swiftVersion: String {
        #if compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }
}
