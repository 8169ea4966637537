package main

// The few operating-system calls of the harness: allocated blocks, RSS,
// the machine description and the mmap of the references. Linux is the
// platform the numbers are taken on; elsewhere /proc reads report
// "unknown".

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// allocatedBytes is st_blocks*512 of path, as du counts it.
func allocatedBytes(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return int64(st.Blocks) * 512, nil
}

// procStatus returns a field of /proc/self/status in bytes, or -1.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, value, ok := strings.Cut(s.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return -1
		}
		return kb << 10
	}
	return -1
}

// clockTicks is USER_HZ, the unit of /proc/stat's times: 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// stealTicks returns the steal time of all CPUs from /proc/stat's "cpu"
// line (its eighth value), in clockTicks, and how many CPUs that line
// sums (the "cpuN" lines: all online CPUs, not only those this process
// may run on); -1 and 0 where it cannot be read.
func stealTicks() (ticks int64, cpus int) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1, 0
	}
	lines := strings.Split(string(b), "\n")
	f := strings.Fields(lines[0])
	if len(f) < 9 || f[0] != "cpu" {
		return -1, 0
	}
	v, err := strconv.ParseInt(f[8], 10, 64)
	if err != nil {
		return -1, 0
	}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "cpu") {
			cpus++
		}
	}
	if cpus == 0 {
		return -1, 0
	}
	return v, cpus
}

// rss is the resident set size of this process now: anonymous memory and
// the pages of mapped files alike.
func rss() int64 { return procStatus("VmRSS") }

// peakRSS is the largest resident set size this process had.
func peakRSS() int64 { return procStatus("VmHWM") }

// machine describes where the numbers were taken.
type machine struct {
	NumCPU   int    `json:"nproc"`
	CPU      string `json:"cpu"`
	Kernel   string `json:"kernel"`
	TempDir  string `json:"temp_dir"`
	TempFS   string `json:"temp_fs"`
	Go       string `json:"go"`
	MemTotal string `json:"mem_total"`
}

func describeMachine(tmp string) machine {
	m := machine{
		NumCPU:   runtime.NumCPU(), // honours the CPU affinity mask, as nproc does
		CPU:      "unknown",
		Kernel:   "unknown",
		TempDir:  tmp,
		TempFS:   fileSystemOf(tmp),
		Go:       runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		MemTotal: "unknown",
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPU = strings.TrimSpace(value)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && name == "MemTotal" {
				m.MemTotal = strings.TrimSpace(value)
				break
			}
		}
	}
	return m
}

// fileSystemOf returns the type of the file system holding dir, from the
// longest mount point in /proc/self/mounts that contains it.
func fileSystemOf(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown"
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		abs = p
	}
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown"
	}
	best, fs := -1, "unknown"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mnt := f[1]
		inside := abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/")
		if inside && len(mnt) > best {
			best, fs = len(mnt), f[2]+" ("+f[0]+")"
		}
	}
	return fs
}

// mapFile maps size bytes of f read-write and shared.
func mapFile(f *os.File, size int) ([]byte, error) {
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	return b, nil
}

func unmap(b []byte) error { return syscall.Munmap(b) }
