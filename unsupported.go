//go:build !linux && !darwin

package bigqueue

import "os"

// This library maps, syncs and locks its files through golang.org/x/sys/unix
// and has been written and tested for Linux and macOS only. On any other
// platform the build stops here, with this message, instead of with
// "undefined: unmap": the stubs below stand in for the helpers of
// mmap_unix.go and allocate_*.go, so that the message is the only error.
var _ int = "github.com/bigqueue-go/bigqueue supports linux and darwin only"

func mapFile(*os.File, int) ([]byte, error)                  { panic("unsupported platform") }
func unmap([]byte) error                                     { panic("unsupported platform") }
func syncMapping([]byte) error                               { panic("unsupported platform") }
func syncDirectory(string) error                             { panic("unsupported platform") }
func openDirectory(string) (*os.File, error)                 { panic("unsupported platform") }
func openAt(*os.File, string, int, uint32) (*os.File, error) { panic("unsupported platform") }
func renameAt(*os.File, string, string) error                { panic("unsupported platform") }
func unlinkAt(*os.File, string) error                        { panic("unsupported platform") }
func statAt(*os.File, string) (fileStat, error)              { panic("unsupported platform") }
func statFile(*os.File) (fileStat, error)                    { panic("unsupported platform") }
func listAt(*os.File) ([]string, error)                      { panic("unsupported platform") }

type fileID struct{ dev, ino uint64 }

type fileStat struct {
	id   fileID
	size int64
}

func noCOW(*os.File) {}

const fullAllocation = false

func lockDir(*os.File) error                { panic("unsupported platform") }
func unlockDir(*os.File) error              { panic("unsupported platform") }
func allocate(*os.File, int64, int64) error { panic("unsupported platform") }
func prefault([]byte) error                 { panic("unsupported platform") }
func noReadAround([]byte)                   { panic("unsupported platform") }
