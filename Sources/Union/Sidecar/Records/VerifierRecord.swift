import GRDB

/// The verifier of an EXCLUSIVE create (RFC 1813 §3.3.8), so a retransmitted create succeeds again.
struct VerifierRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "verifier"
    @BitPattern var fileid: UInt64
    @BitPattern var verifier: UInt64
}
