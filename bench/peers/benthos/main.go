// The Benthos peer: Benthos v4.27.0's own CLI with only the components the benchmark
// uses (Kafka through franz-go, the Prometheus metrics exporter, and the pure
// processors, Bloblang and buffers), built from the Go module proxy by run.sh.
package main

import (
	"context"

	"github.com/benthosdev/benthos/v4/public/service"

	_ "github.com/benthosdev/benthos/v4/public/components/kafka"
	_ "github.com/benthosdev/benthos/v4/public/components/prometheus"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
)

func main() {
	service.RunCLI(context.Background())
}
