package store

import "sync"

// maxRecentPostBytes bounds the bodies recentPosts keeps.
const maxRecentPostBytes = 8 << 20

// recentPosts keeps the queued posts of the ledger rows this process
// recorded until they are all accepted, so that DuePosts does not read a
// body back from the database moments after it was written: during a
// backlog a row's 2-20 KB body spans overflow pages that the poster's read
// connection, whose page cache every commit invalidates, read again one
// pread at a time. The bodies are immutable (inbound_posts rows are only
// inserted), so an entry cannot go stale. It is bounded: a row recorded
// while it is full is read from the database as before, and so is every
// row after a restart.
type recentPosts struct {
	mu    sync.Mutex
	m     map[int64]recentRow
	bytes int
}

// recentRow is an entry of recentPosts.
type recentRow struct {
	posts     [][]byte
	committed uint64 // a barrier ticket taken after the row's commit
}

// add keeps posts of row id, committed before barrier ticket committed, if
// there is room.
func (r *recentPosts) add(id int64, posts [][]byte, committed uint64) {
	n := 0
	for _, p := range posts {
		n += len(p)
	}
	if len(posts) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bytes+n > maxRecentPostBytes {
		return
	}
	if r.m == nil {
		r.m = make(map[int64]recentRow)
	}
	if _, ok := r.m[id]; !ok {
		r.m[id] = recentRow{posts: posts, committed: committed}
		r.bytes += n
	}
}

// get returns post seq of row id and the ticket its row was committed
// before, or nil.
func (r *recentPosts) get(id int64, seq int) ([]byte, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if row := r.m[id]; seq >= 0 && seq < len(row.posts) {
		return row.posts[seq], row.committed
	}
	return nil, 0
}

// drop forgets row id: its posts are all accepted, or it is dead.
func (r *recentPosts) drop(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.m[id].posts {
		r.bytes -= len(p)
	}
	delete(r.m, id)
}
