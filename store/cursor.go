package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Cursor is how far the ledger has recorded a folder: the highest UID
// recorded under the folder's UIDVALIDITY. The zero Cursor means nothing
// has been recorded yet.
type Cursor struct {
	UIDValidity uint32
	UID         uint32
	// HistoryBelow and HistoryBefore mark the folder's history: messages
	// with a UID below HistoryBelow that arrived before HistoryBefore were
	// there before mailgate started reading the folder. Zero: none.
	HistoryBelow  uint32
	HistoryBefore time.Time
	// History is how many messages the start point left out.
	History int
}

// Cursor returns the cursor of (channel, folder), or the zero Cursor when
// there is none.
func (db *DB) Cursor(ctx context.Context, channel, folder string) (Cursor, error) {
	var c Cursor
	var before int64
	err := db.readQueryRow(ctx,
		`SELECT uidvalidity, uid, history_below, history_before, history FROM cursors WHERE channel = ? AND folder = ?`,
		channel, folder).Scan(&c.UIDValidity, &c.UID, &c.HistoryBelow, &before, &c.History)
	if before != 0 {
		c.HistoryBefore = time.UnixMilli(before).UTC()
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("store: cursor %s/%s: %w", channel, folder, err)
	}
	return c, nil
}

// SetCursor sets the cursor of (channel, folder) to c, unconditionally (it
// may go backwards), with its history marks. It records where reading a
// folder starts (a new store, or a UIDVALIDITY change); RecordInbound
// advances the cursor by itself.
func (db *DB) SetCursor(ctx context.Context, channel, folder string, c Cursor) error {
	var before int64
	if !c.HistoryBefore.IsZero() {
		before = c.HistoryBefore.UnixMilli()
	}
	if _, err := db.exec(ctx, `
		INSERT INTO cursors (channel, folder, uidvalidity, uid, updated_at, history_below, history_before, history) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (channel, folder) DO UPDATE SET
			uidvalidity = excluded.uidvalidity, uid = excluded.uid, updated_at = excluded.updated_at,
			history_below = excluded.history_below, history_before = excluded.history_before, history = excluded.history`,
		channel, folder, c.UIDValidity, c.UID, db.nowMS(), c.HistoryBelow, before, c.History); err != nil {
		return fmt.Errorf("store: set cursor %s/%s: %w", channel, folder, err)
	}
	return nil
}

// advanceCursor moves the cursor of (channel, folder) to (uidvalidity, uid):
// under the same UIDVALIDITY the UID only grows; under a different one (or
// when there is no cursor) both are replaced.
func (db *DB) advanceCursor(ctx context.Context, tx *sql.Tx, channel, folder string, uidvalidity, uid uint32, now int64) error {
	_, err := db.txExec(ctx, tx, `
		INSERT INTO cursors (channel, folder, uidvalidity, uid, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (channel, folder) DO UPDATE SET
			uid = CASE WHEN cursors.uidvalidity = excluded.uidvalidity
				AND cursors.uid > excluded.uid THEN cursors.uid ELSE excluded.uid END,
			history_below = CASE WHEN cursors.uidvalidity = excluded.uidvalidity
				THEN cursors.history_below ELSE 0 END,
			history_before = CASE WHEN cursors.uidvalidity = excluded.uidvalidity
				THEN cursors.history_before ELSE 0 END,
			uidvalidity = excluded.uidvalidity,
			updated_at = excluded.updated_at`,
		channel, folder, uidvalidity, uid, now)
	if err != nil {
		return fmt.Errorf("advance cursor: %w", err)
	}
	return nil
}
