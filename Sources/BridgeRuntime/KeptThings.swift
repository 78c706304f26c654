import DittoProtocol

/// The things of the kept device topics, each once, with its live-event revision: a kept topic refers to its
/// thing by position, and many topics of a device (`dev/<n>/telemetry`, `dev/<n>/status`) share one.
///
/// Never shrinks: a thing's revision counter must outlive the topics that named it (a topic evicted and seen
/// again must not count the thing's revisions from the start again), as the per-thing counters always did.
struct KeptThings {
    private struct Thing {
        let id: ThingID
        /// The last revision issued; the run's base before the first.
        var revision: Int64
    }

    private var index = SlotIndex()
    private var things = PagedArray<Thing>()
    private let revisionBase: Int64

    init(revisionBase: Int64) {
        self.revisionBase = revisionBase
    }

    var count: Int { things.count }

    /// The position of `id`, added if it is new.
    mutating func position(of id: ThingID) -> Int {
        let hash = id.hashValue
        if let position = index.first(hash: hash, where: { things[$0].id == id }) { return position }
        index.insert(hash: hash, position: things.count, limit: SlotIndex.maximumPositions)
        things.append(Thing(id: id, revision: revisionBase))
        return things.count - 1
    }

    subscript(position: Int) -> ThingID { things[position].id }

    /// The thing's next live-event revision.
    mutating func nextRevision(at position: Int) -> Int64 {
        things[position].revision += 1
        return things[position].revision
    }

    /// What the table holds in memory (the IDs' own heap storage, for parts past 15 bytes, not counted).
    var storageBytes: Int { index.storageBytes + things.storageBytes }
}
