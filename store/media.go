package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Media is one entry of the media index: a file extracted from an email and
// served at a signed URL. Several entries may share one stored file (same
// SHA256).
type Media struct {
	ID          string // random and URL-safe; PutMedia fills it in when empty
	SHA256      string // hex digest of the content, naming the stored file
	Size        int64
	ContentType string
	Filename    string
	Channel     string
	LedgerID    int64 // the inbound ledger row; 0 = none (yet)
	CreatedAt   time.Time
}

// newMediaID returns 16 random bytes in unpadded base64url.
func newMediaID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// PutMedia adds m to the index. An empty m.ID is replaced by a fresh random
// one and a zero m.CreatedAt by the current time. A LedgerID of 0 leaves the
// entry unlinked (Inbound.MediaIDs links it when the row is recorded).
func (db *DB) PutMedia(ctx context.Context, m *Media) error {
	if m.SHA256 == "" {
		return errors.New("store: put media: empty sha256")
	}
	id := m.ID
	if id == "" {
		var err error
		if id, err = newMediaID(); err != nil {
			return fmt.Errorf("store: put media: %w", err)
		}
	}
	created := m.CreatedAt
	if created.IsZero() {
		created = db.now()
	}
	var ledger sql.NullInt64
	if m.LedgerID != 0 {
		ledger = sql.NullInt64{Int64: m.LedgerID, Valid: true}
	}
	_, err := db.writeExec(ctx, `INSERT INTO media (id, sha256, size, content_type, filename, channel,
			ledger_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		id, m.SHA256, m.Size, m.ContentType, m.Filename, m.Channel, ledger, ms(created))
	if err != nil {
		return fmt.Errorf("store: put media %s: %w", id, err)
	}
	m.ID, m.CreatedAt = id, fromMS(ms(created))
	return nil
}

// mediaCols are the columns scanMedia reads, in order.
const mediaCols = `id, sha256, size, content_type, filename, channel, ledger_id, created_at`

// scanMedia reads one row of mediaCols.
func scanMedia(row interface{ Scan(...any) error }) (*Media, error) {
	var m Media
	var ledger sql.NullInt64
	var created int64
	if err := row.Scan(&m.ID, &m.SHA256, &m.Size, &m.ContentType, &m.Filename, &m.Channel, &ledger, &created); err != nil {
		return nil, err
	}
	m.LedgerID = ledger.Int64
	m.CreatedAt = fromMS(created)
	return &m, nil
}

// Media returns the index entry id, or ErrNotFound.
func (db *DB) Media(ctx context.Context, id string) (*Media, error) {
	m, err := scanMedia(db.readQueryRow(ctx, `SELECT `+mediaCols+` FROM media WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: media %q: %w", id, notFound{})
	}
	if err != nil {
		return nil, fmt.Errorf("store: media %q: %w", id, err)
	}
	return m, nil
}

// ExpiredMedia returns the entries created before before whose ledger row
// is settled for good (posted, skipped or dead) or that have none. Entries
// of rows still being posted or quarantined are kept.
func (db *DB) ExpiredMedia(ctx context.Context, before time.Time) ([]*Media, error) {
	rows, err := db.readQueryOnce(ctx, `SELECT `+mediaCols+` FROM media
		WHERE created_at < ? AND (ledger_id IS NULL OR EXISTS (
			SELECT 1 FROM inbound WHERE id = media.ledger_id AND state IN ('posted', 'skipped', 'dead')))
		ORDER BY created_at, id`, ms(before))
	if err != nil {
		return nil, fmt.Errorf("store: expired media: %w", err)
	}
	defer rows.Close()
	var list []*Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, fmt.Errorf("store: expired media: %w", err)
		}
		list = append(list, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: expired media: %w", err)
	}
	return list, nil
}

// DeleteMedia removes the given entries from the index; unknown ids are
// ignored. Delete a stored file once MediaRefs of its SHA256 is 0.
func (db *DB) DeleteMedia(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	j, err := jsonArray(ids)
	if err != nil {
		return fmt.Errorf("store: delete media: %w", err)
	}
	if _, err := db.exec(ctx, `DELETE FROM media WHERE id IN (SELECT value FROM json_each(?))`, j); err != nil {
		return fmt.Errorf("store: delete media: %w", err)
	}
	return nil
}

// MediaRefs counts the index entries that share the file with this SHA256.
func (db *DB) MediaRefs(ctx context.Context, sha256 string) (int, error) {
	var n int
	if err := db.readQueryRowOnce(ctx, `SELECT count(*) FROM media WHERE sha256 = ?`, sha256).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: media refs %s: %w", sha256, err)
	}
	return n, nil
}

// MediaDigests returns the SHA256 of every content the media index refers
// to, each once.
func (db *DB) MediaDigests(ctx context.Context) ([]string, error) {
	rows, err := db.readQueryOnce(ctx, `SELECT DISTINCT sha256 FROM media ORDER BY sha256`)
	if err != nil {
		return nil, fmt.Errorf("store: media digests: %w", err)
	}
	defer rows.Close()
	var sums []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("store: media digests: %w", err)
		}
		sums = append(sums, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: media digests: %w", err)
	}
	return sums, nil
}
