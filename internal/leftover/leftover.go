// Package leftover keeps, in the agent's state directory, a record of
// what a running agent started that could outlive it: its instances'
// cgroups and sessions, its socket directories. An agent killed with
// SIGKILL leaves them behind; the next agent on the same state directory
// finds the records and removes what they describe before it starts
// anything (docs/security.md, "No leftovers").
//
// Each run of the agent keeps its records in a directory of its own,
// instances/<run> in the state directory, one small file per record.
// Packages register a Cleaner for the kinds of record they write; Open
// runs them over every earlier run's records. The state directory's lock
// (internal/statedir) guarantees those runs have ended.
package leftover

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spear-go/spear/internal/statedir"
)

// Dir is the state directory's subdirectory that holds the runs' books.
const Dir = "instances"

// cleaner removes what one record, as JSON, describes.
type cleaner func(data []byte, log *slog.Logger) error

var cleaners struct {
	mu sync.Mutex
	m  map[string]cleaner
}

// Register sets the cleaner of records of kind, whose data (what their
// writer gave Book.Add) decode into a T. A cleaner removes what one record
// describes, and must do nothing harmful when that is gone already:
// processes may have died, the machine rebooted. An error keeps the
// record for the next agent to try again. Packages call Register from
// init; a kind registered twice panics.
func Register[T any](kind string, clean func(r T, log *slog.Logger) error) {
	cleaners.mu.Lock()
	defer cleaners.mu.Unlock()
	if cleaners.m == nil {
		cleaners.m = map[string]cleaner{}
	}
	if _, dup := cleaners.m[kind]; dup {
		panic("leftover: kind " + kind + " registered twice")
	}
	cleaners.m[kind] = func(data []byte, log *slog.Logger) error {
		var r T
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("not a %s record: %w", kind, err)
		}
		return clean(r, log)
	}
}

func cleanerOf(kind string) cleaner {
	cleaners.mu.Lock()
	defer cleaners.mu.Unlock()
	return cleaners.m[kind]
}

// Book is one run's records. A nil *Book records nothing, for an agent
// without a state directory. Its methods are safe for concurrent use.
type Book struct {
	dir string
}

// record is a record file's content.
type record struct {
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// Open cleans what earlier runs recorded in state, then starts this run's
// book. Records whose cleaner fails, or whose kind has no cleaner in this
// binary, are kept and logged; the rest are removed with the runs' books.
// state must be open (and so locked).
func Open(state *statedir.Dir, log *slog.Logger) (*Book, error) {
	root := state.Join(Dir)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	runs, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, run := range runs {
		if run.IsDir() {
			sweepRun(filepath.Join(root, run.Name()), log.With("run", run.Name()))
		}
	}
	dir := filepath.Join(root, strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	return &Book{dir: dir}, nil
}

// sweepRun cleans what one ended run recorded, and removes its book once
// nothing of it is left.
func sweepRun(dir string, log *slog.Logger) {
	files, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("leftovers of an earlier run not read", "dir", dir, "err", err)
		return
	}
	kept := 0
	for _, f := range files {
		path := filepath.Join(dir, f.Name())
		if strings.HasPrefix(f.Name(), ".") { // a record being written when the run ended
			_ = os.Remove(path)
			continue
		}
		if err := cleanRecord(path, log); err != nil {
			log.Warn("leftover of an earlier run not removed; the next start tries again", "record", f.Name(), "err", err)
			kept++
			continue
		}
		_ = os.Remove(path)
	}
	if kept == 0 {
		_ = os.Remove(dir)
	}
}

// cleanRecord runs the cleaner of the record at path.
func cleanRecord(path string, log *slog.Logger) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("not a record: %w", err)
	}
	clean := cleanerOf(r.Kind)
	if clean == nil {
		return fmt.Errorf("no cleaner for records of kind %q in this binary", r.Kind)
	}
	if err := clean(r.Data, log.With("kind", r.Kind)); err != nil {
		return err
	}
	log.Info("removed what an earlier run left", "kind", r.Kind, "record", string(r.Data))
	return nil
}

// Add records v, encoded as JSON, under kind and key (which names it
// among the run's records of that kind), replacing what was recorded
// under them. The file is replaced atomically, so a run that dies midway
// leaves the old record or the new one. It is not synced to disk: what it
// describes does not survive a crash of the machine either.
func (b *Book) Add(kind, key string, v any) error {
	if b == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	content, err := json.Marshal(record{Kind: kind, Data: data})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(b.dir, ".record-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(content)
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), b.path(kind, key))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("record %s %s: %w", kind, key, err)
	}
	return nil
}

// Remove forgets what was recorded under kind and key: it is gone.
func (b *Book) Remove(kind, key string) {
	if b != nil {
		_ = os.Remove(b.path(kind, key))
	}
}

// path is the file of the record under kind and key.
func (b *Book) path(kind, key string) string {
	return filepath.Join(b.dir, strings.ReplaceAll(kind+"."+key, "/", "_"))
}

// Close removes the run's book, for an agent that shut down cleanly
// (whatever its records described is gone). Records left in it stay, for
// the next agent to clean.
func (b *Book) Close() error {
	if b == nil {
		return nil
	}
	err := os.Remove(b.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
