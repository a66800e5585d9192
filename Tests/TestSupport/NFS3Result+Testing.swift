import NFS3

extension NFS3Result {
    /// The success body, or nil for a failure: `let found = try #require(result.success)`.
    public var success: OK? {
        guard case .ok(let body) = self else { return nil }
        return body
    }

    /// The failure status and body, or nil for a success.
    public var failure: (status: NFSStatus3, body: Fail)? {
        guard case .fail(let status, let body) = self else { return nil }
        return (status, body)
    }
}
