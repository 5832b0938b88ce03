// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Synchronization

/// Most-blocked names and clients over a sliding window, in fixed time
/// buckets. Memory is bounded: each bucket keeps at most `keysPerBucket`
/// distinct names and clients; the rest are counted under "(other)".
final class TopTalkers: Sendable {
    static let bucketSeconds = 10
    static let buckets = 60  // a 10-minute window
    static let keysPerBucket = 512
    static let other = "(other)"

    struct Bucket {
        var slot = -1  // seconds / bucketSeconds
        /// By the hash of the lowercase name: the text is made once per name and bucket.
        var names: [UInt64: (name: String, count: UInt64)] = [:]
        var clients: [IPAddress: UInt64] = [:]
        var otherNames: UInt64 = 0
        var otherClients: UInt64 = 0
    }

    struct Ranking: Sendable {
        var windowSeconds: Int
        var names: [(String, UInt64)]
        var clients: [(String, UInt64)]
    }

    private let buckets = Mutex([Bucket](repeating: Bucket(), count: TopTalkers.buckets))

    func add(name: DomainName, client: IPAddress, at seconds: Int) {
        let slot = seconds / Self.bucketSeconds
        let nameKey = name.suffixHash(fromLabel: 0)
        buckets.withLock { buckets in
            let index = slot % Self.buckets
            if buckets[index].slot != slot { buckets[index] = Bucket(slot: slot) }
            if let known = buckets[index].names[nameKey] {
                buckets[index].names[nameKey] = (known.name, known.count + 1)
            } else if buckets[index].names.count < Self.keysPerBucket {
                buckets[index].names[nameKey] = (name.lowercasedText, 1)
            } else {
                buckets[index].otherNames += 1
            }
            if let known = buckets[index].clients[client] {
                buckets[index].clients[client] = known + 1
            } else if buckets[index].clients.count < Self.keysPerBucket {
                buckets[index].clients[client] = 1
            } else {
                buckets[index].otherClients += 1
            }
        }
    }

    /// The `limit` most blocked names and clients in the window ending at `now`.
    func ranking(limit: Int, now seconds: Int) -> Ranking {
        let current = seconds / Self.bucketSeconds
        var names: [String: UInt64] = [:]
        var clients: [String: UInt64] = [:]
        buckets.withLock { buckets in
            for bucket in buckets where bucket.slot > current - Self.buckets && bucket.slot <= current {
                for (_, entry) in bucket.names { names[entry.name, default: 0] += entry.count }
                for (client, count) in bucket.clients { clients[client.description, default: 0] += count }
                if bucket.otherNames > 0 { names[Self.other, default: 0] += bucket.otherNames }
                if bucket.otherClients > 0 { clients[Self.other, default: 0] += bucket.otherClients }
            }
        }
        func best(_ counts: [String: UInt64]) -> [(String, UInt64)] {
            Array(counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(limit))
                .map { ($0.key, $0.value) }
        }
        return Ranking(windowSeconds: Self.bucketSeconds * Self.buckets, names: best(names), clients: best(clients))
    }
}
