package leftover_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spear-go/spear/internal/leftover"
	"github.com/spear-go/spear/internal/statedir"
)

// thing is what the test kinds record.
type thing struct {
	Name string `json:"name"`
}

// cleaned lists the things the test cleaners were given; "stubborn"
// fails.
var cleaned []string

func init() {
	leftover.Register("test-thing", func(t thing, _ *slog.Logger) error {
		cleaned = append(cleaned, t.Name)
		if t.Name == "stubborn" {
			return errors.New("cannot")
		}
		return nil
	})
}

// run opens the state directory and a book in it, as an agent starting.
func run(t *testing.T, path string) (*statedir.Dir, *leftover.Book) {
	t.Helper()
	state, err := statedir.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	book, err := leftover.Open(state, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return state, book
}

// books lists the runs' book directories in the state directory.
func books(t *testing.T, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(path, leftover.Dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestTheNextRunCleansWhatADeadOneLeft(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	cleaned = nil

	// A run records things and dies without closing its book.
	state, book := run(t, path)
	for _, name := range []string{"a", "b", "stubborn"} {
		if err := book.Add("test-thing", name, thing{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := book.Add("test-thing", "b", thing{Name: "b2"}); err != nil { // replaced
		t.Fatal(err)
	}
	if err := book.Add("test-thing", "gone", thing{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	book.Remove("test-thing", "gone") // it ended properly
	if err := book.Add("unknown-kind", "x", thing{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if len(cleaned) != 0 {
		t.Fatalf("cleaned %v while the run was alive", cleaned)
	}
	state.Close() // the lock goes with the process

	// The next run cleans it up before it starts.
	state, book = run(t, path)
	slices.Sort(cleaned)
	if want := []string{"a", "b2", "stubborn"}; !slices.Equal(cleaned, want) {
		t.Errorf("cleaned %v, want %v", cleaned, want)
	}
	// The stubborn record and the unknown kind stay, in the dead run's
	// book, for the next start; the new run has a book of its own.
	if n := len(books(t, path)); n != 2 {
		t.Errorf("%d books after the sweep, want the dead run's (2 records kept) and the new one's", n)
	}
	if err := book.Close(); err != nil {
		t.Fatal(err)
	}
	state.Close()

	// And tries them again.
	cleaned = nil
	state, book = run(t, path)
	defer state.Close()
	if !slices.Equal(cleaned, []string{"stubborn"}) {
		t.Errorf("second sweep cleaned %v, want the stubborn one again", cleaned)
	}
	if err := book.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNilBookRecordsNothing(t *testing.T) {
	var b *leftover.Book
	if err := b.Add("test-thing", "a", thing{}); err != nil {
		t.Fatal(err)
	}
	b.Remove("test-thing", "a")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
