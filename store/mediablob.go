package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
)

// mediaChunk is the largest piece of a media file stored in one row of
// media_chunks.
const mediaChunk = 1 << 20

// PutMediaBlob stores the content of a media file, size bytes read from
// src, under its SHA256 sum (lower-case hex), in 1 MiB rows, in one
// transaction; a content already stored is left as it is. src is read
// with ReadAt, so that a transaction that has to run again (PostgreSQL)
// reads it again.
//
// The store keeps media contents only for a media.Library whose blobs are
// in the database (a PostgreSQL store shared by several instances); see
// media.Options.Blobs.
func (db *DB) PutMediaBlob(ctx context.Context, sum string, size int64, src io.ReaderAt) error {
	if sum == "" || size < 0 {
		return fmt.Errorf("store: put media blob %q: need a digest and a size", sum)
	}
	buf := make([]byte, min(size, mediaChunk))
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := db.txQueryRowOnce(ctx, tx, `SELECT count(*) FROM media_chunks WHERE sha256 = ?`, sum).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		for seq, off := 0, int64(0); seq == 0 || off < size; seq++ {
			k := min(size-off, mediaChunk)
			if _, err := src.ReadAt(buf[:k], off); err != nil && !(errors.Is(err, io.EOF) && k == 0) {
				return fmt.Errorf("read content at %d: %w", off, err)
			}
			if _, err := db.txExecOnce(ctx, tx, `INSERT INTO media_chunks (sha256, seq, data) VALUES (?, ?, ?)
				ON CONFLICT (sha256, seq) DO NOTHING`, sum, seq, buf[:k]); err != nil {
				return err
			}
			off += k
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: put media blob %s: %w", sum, err)
	}
	return nil
}

// MediaBlob opens the stored content of sum for reading and seeking; the
// chunks are read as the reader reaches them. An absent content yields
// ErrNotFound.
func (db *DB) MediaBlob(ctx context.Context, sum string) (io.ReadSeeker, error) {
	var chunks int
	var size int64
	err := db.readQueryRowOnce(ctx, `SELECT count(*), coalesce(sum(length(data)), 0) FROM media_chunks WHERE sha256 = ?`, sum).
		Scan(&chunks, &size)
	if err != nil {
		return nil, fmt.Errorf("store: media blob %s: %w", sum, err)
	}
	if chunks == 0 {
		return nil, fmt.Errorf("store: media blob %s: %w", sum, notFound{})
	}
	return &blobReader{db: db, ctx: ctx, sum: sum, size: size, seq: -1}, nil
}

// DeleteMediaBlob removes the stored content of sum, unless a media index
// entry still refers to it, and returns its size (0 when nothing was
// removed).
func (db *DB) DeleteMediaBlob(ctx context.Context, sum string) (int64, error) {
	var size int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		size = 0
		var refs int
		err := db.txQueryRowOnce(ctx, tx, `SELECT (SELECT count(*) FROM media WHERE sha256 = ?),
			(SELECT coalesce(sum(length(data)), 0) FROM media_chunks WHERE sha256 = ?)`, sum, sum).Scan(&refs, &size)
		if err != nil || refs > 0 {
			size = 0
			return err
		}
		_, err = db.txExecOnce(ctx, tx, `DELETE FROM media_chunks WHERE sha256 = ?`, sum)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete media blob %s: %w", sum, err)
	}
	return size, nil
}

// blobReader reads a media blob a chunk at a time.
type blobReader struct {
	db   *DB
	ctx  context.Context
	sum  string
	size int64
	off  int64
	seq  int64  // the chunk in buf; -1 none
	buf  []byte // chunk seq
}

// Read implements io.Reader.
func (r *blobReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	seq := r.off / mediaChunk
	if seq != r.seq {
		r.buf = r.buf[:0]
		err := r.db.readQueryRowOnce(r.ctx, `SELECT data FROM media_chunks WHERE sha256 = ? AND seq = ?`, r.sum, seq).Scan(&r.buf)
		if err != nil {
			r.seq = -1
			return 0, fmt.Errorf("store: media blob %s chunk %d: %w", r.sum, seq, err)
		}
		r.seq = seq
	}
	in := r.off - seq*mediaChunk
	if in >= int64(len(r.buf)) {
		return 0, fmt.Errorf("store: media blob %s chunk %d: shorter than expected", r.sum, seq)
	}
	n := copy(p, r.buf[in:])
	r.off += int64(n)
	return n, nil
}

// Seek implements io.Seeker.
func (r *blobReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("store: media blob: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("store: media blob: negative position")
	}
	r.off = offset
	return offset, nil
}
