import GRDB

/// A record's `UInt64` column (a fileid, an inode, a key). SQLite integers are signed 64-bit, and GRDB's own `UInt64`
/// conversion traps above `Int64.max`; these values use the whole range, so they are stored by bit pattern (a value
/// ≥ 2^63 is a negative integer on disk) and read back unchanged. The one place a `UInt64` meets SQLite: records
/// declare `@BitPattern var dirIno: UInt64`, raw SQL passes `value.sqliteValue`.
@propertyWrapper
struct BitPattern<Value: SQLiteBitPattern>: Codable, DatabaseValueConvertible, Sendable {
    var wrappedValue: Value

    init(wrappedValue: Value) {
        self.wrappedValue = wrappedValue
    }

    var databaseValue: DatabaseValue { self.wrappedValue.sqliteValue }

    static func fromDatabaseValue(_ dbValue: DatabaseValue) -> Self? {
        Value(sqliteValue: dbValue).map { Self(wrappedValue: $0) }
    }

    // GRDB stores a `DatabaseValueConvertible` through `databaseValue`; Codable is what the record's synthesized
    // conformance asks of its properties, and keeps the same representation.
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let stored = container.decodeNil() ? DatabaseValue.null : try container.decode(Int64.self).databaseValue
        guard let value = Value(sqliteValue: stored) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a \(Value.self) column")
        }
        self.wrappedValue = value
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self.databaseValue.storage {
        case .int64(let signed): try container.encode(signed)
        default: try container.encodeNil()
        }
    }
}

/// What `BitPattern` stores: `UInt64`, and `UInt64?` (NULL).
protocol SQLiteBitPattern: Sendable {
    /// The value as its INTEGER column holds it; for SQL arguments.
    var sqliteValue: DatabaseValue { get }
    init?(sqliteValue: DatabaseValue)
}

extension UInt64: SQLiteBitPattern {
    var sqliteValue: DatabaseValue { Int64(bitPattern: self).databaseValue }

    init?(sqliteValue: DatabaseValue) {
        guard let signed = Int64.fromDatabaseValue(sqliteValue) else { return nil }
        self.init(bitPattern: signed)
    }
}

extension Optional: SQLiteBitPattern where Wrapped == UInt64 {
    var sqliteValue: DatabaseValue { self?.sqliteValue ?? .null }

    init?(sqliteValue: DatabaseValue) {
        if sqliteValue.isNull {
            self = .none
        } else {
            guard let value = UInt64(sqliteValue: sqliteValue) else { return nil }
            self = value
        }
    }
}
