package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// FolderCursor is the cursor of one folder, for status reports.
type FolderCursor struct {
	Folder      string    `json:"folder"`
	UIDValidity uint32    `json:"uidvalidity"`
	UID         uint32    `json:"uid"`
	UpdatedAt   time.Time `json:"updated_at"`
	// History is how many messages were in the folder when mailgate
	// started reading it and were left unposted (imap.start).
	History int `json:"history"`
}

// ChannelStatus summarises one channel's state in the store, for `mailgate
// status` and the metrics.
type ChannelStatus struct {
	Channel string               `json:"channel"`
	Cursors []FolderCursor       `json:"cursors"`
	Inbound map[InboundState]int `json:"inbound"`
	Outbox  map[string]int       `json:"outbox"`
	// OldestPending is the arrival time of the oldest inbound email not yet
	// posted, or the creation time of the oldest queued reply, whichever
	// is older; zero when nothing is pending.
	OldestPending time.Time `json:"oldest_pending,omitzero"`
	// LastError is the newest error recorded on a ledger or outbox row.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// ActionsRefused counts the emails whose IMAP action (imap.after, the
	// quarantine move) the server refused; they stay where they were.
	ActionsRefused int `json:"actions_refused,omitempty"`
	// LastActionRefused is the newest refusal, with the server's words.
	LastActionRefused string `json:"last_action_refused,omitempty"`
	// OAuth2 is the channel's OAuth2 grant, for channels that log in with
	// tokens; Status leaves it nil (the caller knows the configuration).
	OAuth2 *OAuthGrant `json:"oauth2,omitempty"`
}

// Status returns the state of one channel.
func (db *DB) Status(ctx context.Context, channel string) (*ChannelStatus, error) {
	st := &ChannelStatus{Channel: channel}
	rows, err := db.readQueryOnce(ctx, `SELECT folder, uidvalidity, uid, updated_at, history FROM cursors WHERE channel = ? ORDER BY folder`, channel)
	if err != nil {
		return nil, fmt.Errorf("store: status of %q: %w", channel, err)
	}
	for rows.Next() {
		var c FolderCursor
		var updated int64
		if err := rows.Scan(&c.Folder, &c.UIDValidity, &c.UID, &updated, &c.History); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: status of %q: %w", channel, err)
		}
		c.UpdatedAt = fromMS(updated)
		st.Cursors = append(st.Cursors, c)
	}
	rows.Close()
	if st.Inbound, err = db.Counts(ctx, channel); err != nil {
		return nil, err
	}
	if st.Outbox, err = db.OutboxCounts(ctx, channel); err != nil {
		return nil, err
	}
	var inOldest, outOldest sql.NullInt64
	err = db.readQueryRowOnce(ctx, `SELECT
		(SELECT min(arrived_at) FROM inbound WHERE channel = ? AND state IN ('fetched', 'posting')),
		(SELECT min(created_at) FROM outbox WHERE channel = ? AND state IN ('queued', 'sending'))`, channel, channel).
		Scan(&inOldest, &outOldest)
	if err != nil {
		return nil, fmt.Errorf("store: status of %q: %w", channel, err)
	}
	for _, v := range []sql.NullInt64{inOldest, outOldest} {
		if v.Valid && v.Int64 > 0 && (st.OldestPending.IsZero() || fromMS(v.Int64).Before(st.OldestPending)) {
			st.OldestPending = fromMS(v.Int64)
		}
	}
	var msg string
	var at int64
	err = db.readQueryRowOnce(ctx, `SELECT msg, at FROM (
		SELECT CASE WHEN last_error != '' THEN last_error ELSE reason END AS msg, updated_at AS at FROM inbound
			WHERE channel = ? AND (last_error != '' OR state = 'dead')
		UNION ALL
		SELECT last_error, updated_at FROM outbox WHERE channel = ? AND last_error != ''
	) AS errs ORDER BY at DESC LIMIT 1`, channel, channel).Scan(&msg, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("store: status of %q: %w", channel, err)
	default:
		st.LastError, st.LastErrorAt = msg, fromMS(at)
	}
	var last sql.NullString
	err = db.readQueryRowOnce(ctx, `SELECT count(*),
		(SELECT after_error FROM inbound WHERE channel = ? AND after_error != '' ORDER BY updated_at DESC, id DESC LIMIT 1)
		FROM inbound WHERE channel = ? AND after_error != ''`, channel, channel).Scan(&st.ActionsRefused, &last)
	if err != nil {
		return nil, fmt.Errorf("store: status of %q: %w", channel, err)
	}
	st.LastActionRefused = last.String
	return st, nil
}

// DropDead gives up on a dead letter: it becomes skipped, with the old
// reason kept after "dropped by an admin: ". Its raw copy stays until
// pruned.
func (db *DB) DropDead(ctx context.Context, id int64) error {
	err := db.tx(ctx, func(tx *sql.Tx) error {
		st, err := db.inboundState(ctx, tx, id)
		if err != nil {
			return err
		}
		if st != StateDead {
			return &StateError{Table: "inbound", ID: id, State: string(st), Op: "drop"}
		}
		_, err = db.txExecOnce(ctx, tx, `UPDATE inbound SET state = 'skipped', reason = 'dropped by an admin: ' || reason,
			updated_at = ? WHERE id = ?`, db.nowMS(), id)
		return err
	})
	return wrapErr("drop", id, err)
}

// LatestFromContact returns the newest posted email of contact in the
// channel (without its raw copy), for quoting it below a reply; ErrNotFound
// when there is none.
func (db *DB) LatestFromContact(ctx context.Context, channel, contact string) (*Inbound, error) {
	var id int64
	err := db.readQueryRowOnce(ctx, `SELECT id FROM inbound INDEXED BY inbound_contact
		WHERE channel = ? AND contact = ? AND state = 'posted' ORDER BY arrived_at DESC, id DESC LIMIT 1`,
		channel, normContact(contact)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: latest email from %q: %w", contact, err)
	}
	in, err := db.Inbound(ctx, id)
	if err != nil {
		return nil, err
	}
	in.Raw = nil
	return in, nil
}
