/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord framing, by a
/// 256-entry table: TensorBoard event records are a few hundred bytes a step, so a byte at a time is
/// plenty (no SSE4.2 `crc32` instruction needed).
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// The CRC-32C of `bytes` (CRC32C("123456789") = 0xE3069283).
    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { crc = t[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        }
        return ~crc
    }

    /// TFRecord's masked CRC (tensorflow/core/lib/hash/crc32c.h `Mask`): rotated right by 15 bits plus a
    /// constant, so that a CRC of data that itself holds CRCs stays well distributed.
    public static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
