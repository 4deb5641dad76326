/// What the image classifiers' configs (ViT, DeiT, BEiT) read alike from a transformers config.json: square
/// sizes given as an integer or a pair, the labels (`id2label`, else `num_labels`), and `problem_type`.
enum ImageConfigFields {
    /// image_size and patch_size may be an integer or a pair; a pair must be square.
    static func square<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K, error: (String) -> Error) throws -> Int? {
        if let n = try? c.decodeIfPresent(Int.self, forKey: key) { return n }
        guard let pair = try c.decodeIfPresent([Int].self, forKey: key) else { return nil }
        guard pair.count == 2, pair[0] == pair[1] else {
            throw error("\(key.stringValue) \(pair) is not supported (only square sizes)")
        }
        return pair[0]
    }

    /// The labels from `id2label` (its keys integers), else `num_labels` named LABEL_i, else `fallback`.
    static func labels<K: CodingKey>(_ c: KeyedDecodingContainer<K>, id2label: K, numLabels: K, fallback: [Int: String],
                                     error: (String) -> Error) throws -> [Int: String] {
        if let names = try c.decodeIfPresent([String: String].self, forKey: id2label) {
            var labels: [Int: String] = [:]
            for (key, name) in names {
                guard let i = Int(key) else { throw error("id2label key \"\(key)\" is not an integer") }
                labels[i] = name
            }
            return labels
        }
        if let n = try c.decodeIfPresent(Int.self, forKey: numLabels) {
            return Dictionary(uniqueKeysWithValues: (0..<max(n, 0)).map { ($0, "LABEL_\($0)") })
        }
        return fallback
    }

    /// Only single-label classification is trained: another `problem_type` is an error.
    static func checkProblemType<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K, error: (String) -> Error) throws {
        if let problem = try c.decodeIfPresent(String.self, forKey: key), problem != "single_label_classification" {
            throw error("problem_type \"\(problem)\" is not supported (only single_label_classification)")
        }
    }
}
