import GRDB

/// The sidecar schema. A shipped migration is never modified: add a new one instead.
enum SidecarMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: MetaRecord.databaseTableName) { table in
                table.primaryKey("key", .text)
                table.column("value", .integer).notNull()
            }
            // Directory-scoped records are keyed by the inode of the directory inside this layer's tree/: an inode
            // moves with the directory on rename(2), so no record needs rewriting (and no crash window opens) when a
            // directory is renamed.
            try db.create(table: WhiteoutRecord.databaseTableName) { table in
                table.column("dirIno", .integer).notNull()
                table.column("name", .blob).notNull()
                table.primaryKey(["dirIno", "name"])
            }
            try db.create(table: OpaqueRecord.databaseTableName) { table in
                table.primaryKey("dirIno", .integer)
            }
            try db.create(table: RedirectRecord.databaseTableName) { table in
                table.primaryKey("dirIno", .integer)
                table.column("path", .blob).notNull()
            }
            try db.create(table: IdentityRecord.databaseTableName) { table in
                table.autoIncrementedPrimaryKey("fileid")
                table.column("parent", .integer).notNull()
                table.column("name", .blob).notNull()
                table.column("originLayer", .integer).notNull()
                table.column("originIno", .integer).notNull()
                table.column("upperIno", .integer)
                table.column("isIndexed", .boolean).notNull().defaults(to: false)
                table.column("lowerLinkCount", .integer).notNull().defaults(to: 1)
            }
            try db.create(
                index: "identity_origin", on: IdentityRecord.databaseTableName, columns: ["originLayer", "originIno"],
                unique: true)
            try db.create(
                index: "identity_upper", on: IdentityRecord.databaseTableName, columns: ["upperIno"], unique: true)
            try db.create(table: VerifierRecord.databaseTableName) { table in
                table.primaryKey("fileid", .integer)
                table.column("verifier", .integer).notNull()
            }
        }
        migrator.registerMigration("v2-link-names") { db in
            try db.create(table: LinkNameRecord.databaseTableName) { table in
                table.column("fileid", .integer).notNull()
                table.column("parent", .integer).notNull()
                table.column("name", .blob).notNull()
                table.primaryKey(["fileid", "parent", "name"])
            }
        }
        migrator.registerMigration("v3-lower-names-gone") { db in
            // Lower names of a hard-linked lower inode that no longer show it (linked up into the upper layer, copied
            // up, whited out, renamed over): nlink counts the visible names (see `UnionNamespace.attributes`).
            try db.alter(table: IdentityRecord.databaseTableName) { table in
                table.add(column: "lowerNamesGone", .integer).notNull().defaults(to: 0)
            }
            // Indexed copies made before v3: their copied-up name is no longer a lower name.
            try db.execute(sql: "UPDATE identity SET lowerNamesGone = 1 WHERE isIndexed AND upperIno IS NOT NULL")
        }
        migrator.registerMigration("v4-lower-layers") { db in
            // The real paths of the lowers the store was last opened with (top-most first, position 1 = layer 1):
            // `LayerTools.promote` walks them to carry the other lower names of `index/` copies.
            try db.create(table: "lowerLayer") { table in
                table.primaryKey("position", .integer)
                table.column("path", .blob).notNull()
            }
        }
        migrator.registerMigration("v5-layer-format") { db in
            // Marks the database as a Strata layer (`LayerFormat`): a tree/ + layer.db that lacks it is a plain tree.
            try db.execute(
                sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                arguments: [LayerFormat.markerKey, LayerFormat.version])
        }
        migrator.registerMigration("v6-identity-without-autoincrement") { db in
            // fileids are Strata's own (allocated below `fileidReserved`, derived, or a shared store's), never picked
            // by SQLite: AUTOINCREMENT only rewrote `sqlite_sequence` in every batch that made an object, one of the
            // four pages such a batch wrote to the WAL. What it kept, the highest fileid ever inserted, is carried
            // into the reservation (when it is an allocated one), so that no fileid is handed out twice.
            let sequence = UInt64(
                bitPattern: try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'identity'") ?? 0)
            let reserved = try MetaRecord.fetchOne(db, key: "fileidReserved")?.value ?? 0
            if sequence < DerivedFileids.base, sequence > reserved {
                try MetaRecord(key: "fileidReserved", value: sequence).save(db)
            }
            try db.create(table: "identity_new") { table in
                table.primaryKey("fileid", .integer)
                table.column("parent", .integer).notNull()
                table.column("name", .blob).notNull()
                table.column("originLayer", .integer).notNull()
                table.column("originIno", .integer).notNull()
                table.column("upperIno", .integer)
                table.column("isIndexed", .boolean).notNull().defaults(to: false)
                table.column("lowerLinkCount", .integer).notNull().defaults(to: 1)
                table.column("lowerNamesGone", .integer).notNull().defaults(to: 0)
            }
            let columns =
                "fileid, parent, name, originLayer, originIno, upperIno, isIndexed, lowerLinkCount, lowerNamesGone"
            try db.execute(sql: "INSERT INTO identity_new (\(columns)) SELECT \(columns) FROM identity")
            try db.drop(table: IdentityRecord.databaseTableName)  // its indexes and its sqlite_sequence row with it
            try db.rename(table: "identity_new", to: IdentityRecord.databaseTableName)
            try db.create(
                index: "identity_origin", on: IdentityRecord.databaseTableName, columns: ["originLayer", "originIno"],
                unique: true)
            try db.create(
                index: "identity_upper", on: IdentityRecord.databaseTableName, columns: ["upperIno"], unique: true)
        }
        migrator.registerMigration("v7-identity-without-indexes") { db in
            // Nothing reads identities by origin or upper inode from SQLite: the store loads every row at open and
            // keeps both keys in memory (`IdentityStore.Tables`), where their uniqueness is kept too (a load finds
            // and repairs any row that claims a key another row holds). The two indexes only cost a leaf each in
            // every transaction that records an object, on inode numbers that scatter: two of the three WAL pages a
            // new object wrote, and of a mkdir-tree batch's ten. Measured (nfsbench mkdir-tree 100 × 500, qd 32,
            // ext4 without a journal, alternating): a flush 1,281–1,331 → 1,144–1,149 µs, server CPU −5 %.
            try db.execute(sql: "DROP INDEX IF EXISTS identity_origin")
            try db.execute(sql: "DROP INDEX IF EXISTS identity_upper")
        }
        return migrator
    }
}
