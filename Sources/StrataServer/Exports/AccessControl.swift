import Foundation
import SunRPC
import Union

/// Access control: which rule admits a caller, under which client key and credentials, and
/// into which namespace (`admit`), the step every NFS and MOUNT call goes through.
extension ExportRegistry {

    /// The client rule of `export` that applies to the caller, or nil if none does.
    func rule(for export: ExportConfiguration, call: RPCCallContext) -> ClientRule? {
        guard let address = call.remoteIPAddress else { return nil }
        return export.clients.bestMatch(for: address)
    }

    /// The caller's client key for `export`: address or AUTH_SYS machine name, mapped through
    /// `[clients]`, sanitised for use as a path component.
    ///
    /// A machine name is whatever the client says it is. With `client_key = "hostname"` it names
    /// the client's upper only where the operator vouches for it: the rule that admits the
    /// caller names this very host (e.g. a NAT gateway), or `[clients]` lists the name or the
    /// caller's address. Anyone else is keyed by address, so a guest admitted by a network or
    /// `*` rule can neither reach another client's upper by sending its name nor make an upper
    /// for every name it invents.
    func clientKey(
        for export: ExportConfiguration, rule: ClientRule, call: RPCCallContext, clientKeys: [String: String]
    ) -> String {
        let address = call.remoteIPAddress?.description ?? "unknown"
        var raw = address
        if export.clientKey == .hostname, case .sys(let auth) = call.credential, !auth.machineName.isEmpty {
            var isVouchedFor = clientKeys[auth.machineName] != nil || clientKeys[address] != nil
            if case .host = rule.match { isVouchedFor = true }
            if isVouchedFor { raw = auth.machineName }
        }
        if let mapped = clientKeys[raw] ?? clientKeys[address] {
            raw = mapped
        }
        return sanitizedClientKey(raw)
    }

    static func squash(_ credential: RPCCredential, options: ClientOptions) -> Credentials? {
        let anonymous = Credentials(uid: options.anonymousUID, gid: options.anonymousGID, groups: [])
        switch credential {
        case .none:
            return anonymous
        case .sys(let auth):
            if options.squashesAll { return anonymous }
            guard options.squashesRoot else {
                return Credentials(uid: auth.uid, gid: auth.gid, groups: auth.groups)
            }
            // root_squash maps uid 0 and gid 0, including gid 0 among the supplementary groups,
            // as knfsd does.
            return Credentials(
                uid: auth.uid == 0 ? options.anonymousUID : auth.uid,
                gid: auth.gid == 0 ? options.anonymousGID : auth.gid,
                groups: auth.groups.map { $0 == 0 ? options.anonymousGID : $0 })
        case .other:
            return nil
        }
    }

    /// Builds the call context for `export`, applying access control and squashing.
    ///
    /// A client whose rule is `ro` needs no upper: it gets the export's shared namespace of the
    /// lowers, unless it has an upper already (it was read-write before a reload), which it
    /// keeps seeing, read-only, with its handles valid. That exception holds only for a key
    /// the client cannot choose (its address, or a machine name behind a rule for its very
    /// address): a guest sending another client's machine name never reads that client's upper.
    /// - Parameter known: the `[clients]` table and the export's image when the caller read them already, in
    ///   the same lock section as the export (each call takes the state lock as few times as
    ///   it can, and only shared).
    func admit(
        export: ExportConfiguration, call: RPCCallContext, create: Bool,
        known: (clientKeys: [String: String], image: ExportImage?)? = nil,
        mayBlock: Bool = true
    ) throws(CallRejection) -> ExportCall {
        guard let rule = self.rule(for: export, call: call) else { throw .accessDenied }
        if rule.options.requiresPrivilegedPort, call.remotePort >= 1024 { throw .tooWeak }
        guard let credentials = ExportRegistry.squash(call.credential, options: rule.options) else {
            throw .unsupportedCredential
        }
        let (clientKeys, image) =
            known ?? self.state.withReadLock { ($0.configuration.clientKeys, self.image(of: export, in: $0)) }
        let clientKey = self.clientKey(for: export, rule: rule, call: call, clientKeys: clientKeys)
        let hasPerClientUpper = export.hasPerClientUpper
        var isShared = !hasPerClientUpper
        if hasPerClientUpper, rule.options.isReadOnly {
            // May list the uppers on disk (once).
            guard mayBlock else { throw .layerUnavailable("not answered without blocking") }
            let address = call.remoteIPAddress.map { "\($0)" } ?? "unknown"
            var isKeyOfThisHost = clientKey == sanitizedClientKey(clientKeys[address] ?? address)
            if case .host = rule.match { isKeyOfThisHost = true }
            isShared = !(isKeyOfThisHost && self.clientsWithUpper(export).contains(clientKey))
        }
        // The client's image version: a move (at its MNT) between here and the open below makes
        // the open refuse this version (`open` checks it again under the opening lock).
        let version = image?.placement(of: clientKey) ?? 1
        let key = NamespaceKey(exportID: export.exportID, clientKey: isShared ? "" : clientKey, version: version)
        // The namespace and the reset generation are read in one lock section: a reset removes
        // the one and bumps the other in one section too, so a call never pairs a new
        // generation with the namespace of the upper the reset deletes.
        let now = wallClockSeconds()
        let (namespace, generation, isSeen) = try self.withNamespace(
            key, export: export, create: create && !rule.options.isReadOnly, mayOpen: mayBlock
        ) { state, open in
            let seen = state.lastSeen[clientKey]
            seen?.advance(to: now, granularity: 1)
            return (open.namespace, state.generations[clientKey] ?? 0, seen != nil)
        }
        if !isSeen {
            // A client's first call since the server started.
            self.state.withLock { state in
                if let seen = state.lastSeen[clientKey] {
                    seen.advance(to: now, granularity: 1)
                } else {
                    state.lastSeen[clientKey] = TimeStamp(now)
                }
            }
        }
        return ExportCall(
            namespace: namespace, credentials: credentials, isReadOnly: rule.options.isReadOnly || namespace.isReadOnly,
            exportPath: export.path, exportID: export.exportID, clientKey: clientKey,
            clientTag: isShared
                ? self.sharedTag(version: version)
                : self.clientTag(export: export, clientKey: clientKey, generation: generation, version: version),
            options: rule.options, call: call, logLevel: self.logger.logLevel)
    }
}

extension RPCCallContext {
    /// The caller's address as access rules see it (IPv4-mapped IPv6 folded to IPv4).
    /// Read from the socket address itself: every call asks, and going through text
    /// (`inet_ntop`, then `inet_pton`) cost more than the rest of access control.
    var remoteIPAddress: IPAddress? {
        switch self.remoteAddress {
        case .v4(let address):
            return .v4(UInt32(bigEndian: address.address.sin_addr.s_addr))
        case .v6(let address):
            var raw = address.address.sin6_addr
            return IPAddress(v6Bytes: withUnsafeBytes(of: &raw) { Array($0) })
        default:
            return nil
        }
    }
}
