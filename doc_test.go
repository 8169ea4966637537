package bigqueue

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every exported function and method that takes arguments has a runnable
// example, so that go doc shows one for it.
func TestEveryExportedNameWithArgumentsHasExample(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.ParseComments)
		require.NoError(t, err)
		files = append(files, f)
	}
	p, err := doc.NewFromFiles(fset, files, "github.com/bigqueue-go/bigqueue")
	require.NoError(t, err)
	var missing []string
	check := func(name string, f *doc.Func) {
		if f.Decl.Type.Params.NumFields() > 0 && len(f.Examples) == 0 {
			missing = append(missing, name)
		}
	}
	for _, f := range p.Funcs {
		check(f.Name, f)
	}
	for _, typ := range p.Types {
		for _, f := range typ.Funcs {
			check(f.Name, f)
		}
		for _, m := range typ.Methods {
			check(typ.Name+"."+m.Name, m)
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "exported names that take arguments and have no example")
}
