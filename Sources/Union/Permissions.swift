import Glibc

/// POSIX permission checks as the kernel makes them for the caller's credentials.
enum Permission {
    static let read: UInt32 = 4
    static let write: UInt32 = 2
    static let exec: UInt32 = 1

    /// Whether `cred` may `want` (a combination of r=4, w=2, x=1) on an object with `st`.
    /// uid 0 bypasses read and write; execute needs some x bit unless the object is a directory.
    static func allows(_ st: stat, _ cred: Credentials, _ want: UInt32) -> Bool {
        let mode = UInt32(st.st_mode)
        if cred.isRoot {
            if want & Self.exec != 0 && !st.isDirectory && mode & 0o111 == 0 { return false }
            return true
        }
        let bits: UInt32
        if cred.uid == st.st_uid {
            bits = (mode >> 6) & 7
        } else if cred.isInGroup(st.st_gid) {
            bits = (mode >> 3) & 7
        } else {
            bits = mode & 7
        }
        return bits & want == want
    }

    static func require(_ st: stat, _ cred: Credentials, _ want: UInt32) throws(UnionError) {
        if !Self.allows(st, cred, want) { throw .accessDenied }
    }

    static func isOwnerOrRoot(_ st: stat, _ cred: Credentials) -> Bool {
        cred.isRoot || cred.uid == st.st_uid
    }

    /// The kernel's `chown_ok`: only CAP_CHOWN (root) gives a file to another user; the owner may name its own uid.
    /// Anyone else gets EPERM, even when the uid does not change.
    static func mayChown(_ st: stat, _ cred: Credentials, to uid: UInt32) -> Bool {
        cred.isRoot || (cred.uid == st.st_uid && uid == st.st_uid)
    }

    /// The kernel's `chgrp_ok`: the owner may keep the group or pick one of its groups; root may pick any.
    static func mayChgrp(_ st: stat, _ cred: Credentials, to gid: UInt32) -> Bool {
        cred.isRoot || (cred.uid == st.st_uid && (gid == st.st_gid || cred.isInGroup(gid)))
    }

    /// The kernel's `setattr_should_drop_sgid` for a chown by someone without CAP_FSETID outside the file's group:
    /// set-gid without group-execute goes too (the server's own chown, as root, only drops it with group-execute).
    static func chownDropsSetgid(_ st: stat, _ cred: Credentials) -> Bool {
        let mode = UInt32(st.st_mode)
        return !st.isDirectory && mode & UInt32(S_ISGID) != 0 && mode & 0o010 == 0 && !cred.isRoot
            && !cred.isInGroup(st.st_gid)
    }

    /// The sticky-bit rule for removing or renaming away an entry of `dir`.
    static func mayDeleteEntry(dir: stat, entry: stat, _ cred: Credentials) -> Bool {
        guard UInt32(dir.st_mode) & UInt32(S_ISVTX) != 0 else { return true }
        return cred.isRoot || cred.uid == entry.st_uid || cred.uid == dir.st_uid
    }
}
