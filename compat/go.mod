module github.com/bigqueue-go/bigqueue/compat

go 1.23.0

require (
	github.com/bigqueue-go/bigqueue v0.0.0
	github.com/grandecola/bigqueue v0.6.0
	github.com/stretchr/testify v1.12.1
)

require (
	github.com/grandecola/mmap v0.7.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.35.0 // indirect
)

replace github.com/bigqueue-go/bigqueue => ../
