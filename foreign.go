package bigqueue

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// originalMetadataName is the file that marks a directory written by
// github.com/grandecola/bigqueue; its arenas are named N_arena.dat.
const originalMetadataName = "metadata.dat"

// checkBeforeOpen looks at dir, which NewQueue has opened and locked,
// before anything is written into it, and refuses what this library must
// not open:
//
//   - a directory written by github.com/grandecola/bigqueue (it holds
//     metadata.dat): ErrForeignQueue, saying how to import it;
//   - a non-empty directory without an index of ours that holds anything
//     this library does not write: ErrForeignQueue. "lost+found" is
//     tolerated, so that the root of a dedicated file system works;
//   - an index whose header is intact but of another format version, or
//     of another arena size than SetArenaSize asked for:
//     ErrIncompatibleVersion or ErrInvalidArenaSize, bare, as the original
//     returned them.
//
// Anything else about the index (a damaged header) is left to NewQueue's
// open, which reports it. The check only reads: it lists dir and reads
// the index header.
func checkBeforeOpen(d *queueDir, o *options) error {
	dir := d.path
	names, err := d.names()
	if err != nil {
		return fmt.Errorf("open queue %s: %w", dir, err)
	}
	var foreign, arenas []string
	hasIndex := false
	for _, name := range names {
		switch {
		case name == originalMetadataName:
			return fmt.Errorf("open queue %s: it holds a queue written by github.com/grandecola/bigqueue (%s), "+
				"whose format this library does not read; import it into a new, empty directory with "+
				"migrate.Import(%q, newDir) from github.com/bigqueue-go/bigqueue/migrate, then open newDir: %w",
				dir, originalMetadataName, dir, ErrForeignQueue)
		case name == indexFileName:
			hasIndex = true
		case isOwnFileName(name) && (strings.HasPrefix(name, "arena-") || strings.HasPrefix(name, "damaged-")):
			arenas = append(arenas, name)
		case isOwnFileName(name) || name == "lost+found":
		default:
			foreign = append(foreign, name)
		}
	}
	if !hasIndex && len(foreign) > 0 {
		slices.Sort(foreign)
		shown := foreign[:min(len(foreign), 5)]
		more := ""
		if len(foreign) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(foreign)-len(shown))
		}
		return fmt.Errorf("open queue %s: the directory holds no queue but other files (%s%s); "+
			"refusing to write into it: use an empty or new directory: %w",
			dir, strings.Join(shown, ", "), more, ErrForeignQueue)
	}
	if !hasIndex && len(arenas) > 0 {
		// An arena file is created only once the index is durably in the
		// directory: arenas without it are damage (an index deleted or
		// renamed away), never a fresh queue to start over.
		slices.Sort(arenas)
		return fmt.Errorf("open queue %s: %d arena files (%s ... %s) but no %s: the index is gone, "+
			"and with it the positions; nothing was opened or deleted: %w",
			dir, len(arenas), arenas[0], arenas[len(arenas)-1], indexFileName, ErrCorrupt)
	}
	if !hasIndex {
		d.listed = names
		return nil
	}
	if err := checkStoredIndex(d, o); err != nil {
		return err
	}
	d.listed = names
	return nil
}

// checkStoredIndex reads the header of d's index and returns
// ErrIncompatibleVersion or ErrInvalidArenaSize, bare, when an intact
// header says so. It returns nil for everything else, NewQueue's open
// reports it.
func checkStoredIndex(d *queueDir, o *options) error {
	f, err := d.openRead(indexFileName)
	if err != nil {
		return nil
	}
	hdr := make([]byte, indexHeaderSize)
	_, err = io.ReadFull(f, hdr)
	if cerr := f.Close(); err != nil || cerr != nil {
		return nil
	}
	switch err := checkIndexHeader(hdr); {
	case errors.Is(err, ErrIncompatibleVersion):
		return ErrIncompatibleVersion
	case err != nil:
		return nil
	}
	if o.arenaSizeSet && le64(hdr[idxArenaSizeOff:]) != uint64(o.arenaSize) {
		return ErrInvalidArenaSize
	}
	return nil
}

// isOwnFileName reports whether name is one this library writes into a
// queue directory: index.bq, index.bq.tmp, arena-N.bq,
// spare-N.bq, damaged-N.bq and damaged-N-K.bq with N and K decimal
// numbers, and the lock file of earlier versions.
func isOwnFileName(name string) bool {
	switch name {
	case legacyLockFileName, indexFileName, indexFileName + ".tmp":
		return true
	}
	if isSetAsideName(name) {
		return true
	}
	for _, prefix := range []string{"arena-", "spare-"} {
		digits, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		digits, ok = strings.CutSuffix(digits, ".bq")
		return ok && digits != "" && strings.Trim(digits, "0123456789") == ""
	}
	return false
}

// isSetAsideName reports whether name is one setAside gives a file:
// damaged-N.bq or damaged-N-K.bq, with N and K decimal numbers.
func isSetAsideName(name string) bool {
	rest, ok := strings.CutPrefix(name, "damaged-")
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, ".bq")
	if !ok {
		return false
	}
	id, k, twoParts := strings.Cut(rest, "-")
	isNumber := func(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
	return isNumber(id) && (!twoParts || isNumber(k))
}
