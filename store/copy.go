package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// copyTables are the tables CopyTo copies, parents before children.
var copyTables = []string{
	"cursors", "inbound", "inbound_text", "inbound_posts", "inbound_raw_chunks", "threads", "thread_messages",
	"outbox", "media", "media_chunks", "installation_keys", "oauth_grants",
}

// CopyStats counts the rows CopyTo copied, per table.
type CopyStats map[string]int

// ErrAlreadyCopied is returned by CopyTo when the destination was filled
// by an earlier copy.
var ErrAlreadyCopied = errors.New("store: the PostgreSQL store was already copied from an SQLite store")

// CopyTo copies every row of db, an SQLite store, into dst, a PostgreSQL
// store at the same schema version, in one transaction of dst: the
// ledger, cursors, outbox, threads, media index (and contents kept in the
// store), installation keys and OAuth2 grants. The installation keys
// replace those dst made for itself, so Message-IDs, media URLs and sealed
// refresh tokens stay valid. dst records the copy, and a second CopyTo
// fails with ErrAlreadyCopied; one whose ledger, outbox or threads are not
// empty is refused too (it is in use).
//
// Stop the daemon that uses db first: rows it writes during the copy are
// not copied.
func (db *DB) CopyTo(ctx context.Context, dst *DB) (CopyStats, error) {
	if db.d.postgres || !dst.d.postgres {
		return nil, errors.New("store: copy: want an SQLite store copied to a PostgreSQL store")
	}
	fail := func(err error) (CopyStats, error) {
		return nil, fmt.Errorf("store: copy %s to %s: %w", db.path, dst.path, err)
	}
	from, err := db.SchemaVersion(ctx)
	if err != nil {
		return fail(err)
	}
	if to, err := dst.SchemaVersion(ctx); err != nil {
		return fail(err)
	} else if to != from {
		return fail(fmt.Errorf("schema version %d, but the destination has %d", from, to))
	}
	src, err := db.beginRead(ctx)
	if err != nil {
		return fail(err)
	}
	defer src.Rollback()
	tx, err := dst.write.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback()
	var copiedFrom string
	if err := tx.QueryRowContext(ctx, `SELECT copied_from FROM mailgate_schema FOR UPDATE`).Scan(&copiedFrom); err != nil {
		return fail(err)
	}
	if copiedFrom != "" {
		return nil, fmt.Errorf("%w (from %s)", ErrAlreadyCopied, copiedFrom)
	}
	for _, t := range []string{"inbound", "outbox", "threads", "cursors"} {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
			return fail(err)
		}
		if n > 0 {
			return fail(fmt.Errorf("the destination's %s has %d rows: it is in use; copy only into a new database", t, n))
		}
	}
	stats := CopyStats{}
	for _, t := range copyTables {
		n, err := copyTable(ctx, src, tx, t)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", t, err))
		}
		stats[t] = n
	}
	// The identity columns go on after the copied ids.
	for _, t := range []string{"inbound", "threads", "thread_messages", "outbox"} {
		if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('`+t+`', 'id'), coalesce(max(id), 0) + 1, false) FROM `+t); err != nil {
			return fail(fmt.Errorf("%s: %w", t, err))
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE mailgate_schema SET copied_from = $1, copied_at = $2`, db.path, db.nowMS()); err != nil {
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return stats, nil
}

// copyTable copies the rows of table from an SQLite read transaction to a
// PostgreSQL transaction; installation keys replace the destination's.
func copyTable(ctx context.Context, src, dst *sql.Tx, table string) (int, error) {
	types := map[string]string{} // the destination's column types
	rows, err := dst.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1`, table)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var c, ty string
		if err := rows.Scan(&c, &ty); err != nil {
			rows.Close()
			return 0, err
		}
		types[c] = ty
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var cols []string
	rows, err = src.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return 0, err
		}
		if _, ok := types[c]; !ok {
			rows.Close()
			return 0, fmt.Errorf("column %s is missing in the destination", c)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	ph := make([]string, len(cols))
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	insert := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (` + strings.Join(ph, ", ") + `)`
	if table == "installation_keys" {
		insert += ` ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at`
	}
	rows, err = src.QueryContext(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		for i, c := range cols {
			// SQLite's dynamic types: a BLOB column may hold text and a
			// TEXT column bytes.
			switch v := vals[i].(type) {
			case string:
				if types[c] == "bytea" {
					vals[i] = []byte(v)
				}
			case []byte:
				if types[c] == "text" {
					vals[i] = string(v)
				}
			}
		}
		if _, err := dst.ExecContext(ctx, insert, vals...); err != nil {
			return n, fmt.Errorf("row %d: %w", n+1, err)
		}
		n++
	}
	return n, rows.Err()
}
