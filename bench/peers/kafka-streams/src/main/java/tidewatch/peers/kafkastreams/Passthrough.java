package tidewatch.peers.kafkastreams;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.Locale;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.StreamPartitioner;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;

/**
 * The Kafka Streams peer of the tidewatch passthrough: reads every record of the input
 * topic and writes it unchanged (key, value, headers and timestamp, as raw bytes) to the
 * same partition of the output topic, at least once.
 *
 * <pre>
 * java -Xmx1g -jar kafka-streams-passthrough.jar --bootstrap 127.0.0.1:9092 \
 *     --input IN --output OUT --threads 1 --expect 1000000 [--timeout-s 600] [--observe]
 * </pre>
 *
 * <p>With {@code --observe} an {@code observe} step before the copy does what tidewatch's
 * quality observer does: it parses each value as JSON (Jackson) and counts the records
 * and, per field, those whose {@code event_time}, {@code user_id} or {@code page} is
 * missing, null or "", per task; a wall-clock punctuator reports each task's counts
 * every 10 s (one JSON line on stderr per task and window, the last window at close),
 * and the result line carries their sum as {@code observed}.
 *
 * <p>When {@code --expect} records have been forwarded to the sink, the instance is
 * closed (a clean close flushes the producer and commits the offsets) and one JSON line
 * goes to stdout: {@code {"records":N,"seconds":S}} (after a line {@code {"event":"start"}}
 * printed just before the timed span begins), S measured from just before
 * {@code KafkaStreams.start()} to the return of {@code close()}. Everything else goes to
 * stderr, including one line with the phases (first RUNNING, N forwarded, closed) and the
 * process CPU time over the same span. Exit status 0 on success, 1 on a stream error or timeout, 2 on bad arguments.
 */
public final class Passthrough {

    /**
     * The input partition of the record the current stream thread is forwarding. The sink's
     * partitioner runs synchronously inside {@code forward()} on the same thread, so it
     * reads the partition the processor put here just before.
     */
    private static final ThreadLocal<int[]> CURRENT_PARTITION = ThreadLocal.withInitial(() -> new int[] {-1});

    /** {@code Optional.of(Set.of(p))} for small p, so the sink allocates nothing per record. */
    private static final int CACHED = 1024;
    @SuppressWarnings("unchecked")
    private static final Optional<Set<Integer>>[] SAME = new Optional[CACHED];

    static {
        for (int p = 0; p < CACHED; p++) {
            SAME[p] = Optional.of(Set.of(p));
        }
    }

    /** Sends each record to the partition it was read from. */
    static final StreamPartitioner<byte[], byte[]> SAME_PARTITION = (topic, key, value, numPartitions) -> {
        int p = CURRENT_PARTITION.get()[0];
        if (p < 0 || p >= numPartitions) {
            throw new IllegalStateException("input partition " + p + " does not exist in " + topic
                    + " (" + numPartitions + " partitions): the output needs at least as many partitions as the input");
        }
        return p < CACHED ? SAME[p] : Optional.of(Set.of(p));
    };

    /** Forwards every record unchanged and counts it. */
    static final class Copy implements Processor<byte[], byte[], byte[], byte[]> {
        private final AtomicLong forwarded;
        private final long expect;
        private final CountDownLatch done;
        private ProcessorContext<byte[], byte[]> context;

        Copy(AtomicLong forwarded, long expect, CountDownLatch done) {
            this.forwarded = forwarded;
            this.expect = expect;
            this.done = done;
        }

        @Override
        public void init(ProcessorContext<byte[], byte[]> context) {
            this.context = context;
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            int[] current = CURRENT_PARTITION.get(); // of the stream thread running this task now
            current[0] = context.recordMetadata().map(RecordMetadata::partition).orElse(-1);
            context.forward(record);
            current[0] = -1;
            if (forwarded.incrementAndGet() == expect) {
                done.countDown();
            }
        }
    }


    /** The fields whose emptiness tidewatch's quality observer counts. */
    static final String[] FIELDS = {"event_time", "user_id", "page"};

    /** Sums over every reported window: records, unparseable, then one per field. */
    static final AtomicLong[] OBSERVED = {new AtomicLong(), new AtomicLong(), new AtomicLong(), new AtomicLong(), new AtomicLong()};

    /**
     * Counts what the quality observer counts and forwards every record unchanged;
     * reports its counts every 10 s of wall-clock time and at close.
     */
    static final class Observe implements Processor<byte[], byte[], byte[], byte[]> {
        private static final ObjectMapper JSON = new ObjectMapper();
        private final long[] counts = new long[2 + FIELDS.length];
        private ProcessorContext<byte[], byte[]> context;
        private long windowStart;

        @Override
        public void init(ProcessorContext<byte[], byte[]> context) {
            this.context = context;
            this.windowStart = System.currentTimeMillis();
            context.schedule(Duration.ofSeconds(10), PunctuationType.WALL_CLOCK_TIME, this::report);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            counts[0]++;
            JsonNode doc = null;
            boolean parsed = true;
            try {
                doc = record.value() == null ? null : JSON.readTree(record.value());
            } catch (IOException e) {
                parsed = false;
                counts[1]++;
            }
            for (int i = 0; parsed && i < FIELDS.length; i++) {
                JsonNode v = doc != null && doc.isObject() ? doc.get(FIELDS[i]) : null;
                if (v == null || v.isNull() || (v.isTextual() && v.textValue().isEmpty())) {
                    counts[2 + i]++;
                }
            }
            context.forward(record);
        }

        private void report(long now) {
            if (counts[0] > 0) {
                StringBuilder line = new StringBuilder();
                line.append("{\"task\":\"").append(context.taskId()).append("\",\"window_start_ms\":").append(windowStart)
                        .append(",\"records\":").append(counts[0]).append(",\"unparseable\":").append(counts[1]).append(",\"invalid\":{");
                for (int i = 0; i < FIELDS.length; i++) {
                    line.append(i == 0 ? "" : ",").append('"').append(FIELDS[i]).append("\":").append(counts[2 + i]);
                }
                System.err.println(line.append("}}"));
                for (int i = 0; i < counts.length; i++) {
                    OBSERVED[i].addAndGet(counts[i]);
                    counts[i] = 0;
                }
            }
            windowStart = now;
        }

        @Override
        public void close() {
            report(System.currentTimeMillis());
        }
    }

    private record Args(String bootstrap, String input, String output, int threads, long expect, long timeoutS, boolean observe) {}

    public static void main(String[] argv) throws Exception {
        Args args;
        try {
            args = parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("passthrough: " + e.getMessage());
            System.err.println("usage: --bootstrap HOST:PORT --input TOPIC --output TOPIC --threads N --expect N [--timeout-s S] [--observe]");
            System.exit(2);
            return;
        }

        Path stateDir = Files.createTempDirectory("tidewatch-kstreams-");
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "tidewatch-peer-passthrough-" + UUID.randomUUID());
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap());
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args.threads());
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // The producer as tidewatch's (librdkafka) producer is set: linger.ms 5 (Streams'
        // own default is 100), batches up to 1 000 000 bytes (librdkafka's batch.size; the
        // Java default is 16 384), idempotent with acks=all, no compression.
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 1_000_000);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), true);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
        props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "none");

        AtomicLong forwarded = new AtomicLong();
        CountDownLatch done = new CountDownLatch(1);
        Topology topology = new Topology();
        topology.addSource("source", new ByteArrayDeserializer(), new ByteArrayDeserializer(), args.input());
        String copyParent = "source";
        if (args.observe()) {
            topology.addProcessor("observe", Observe::new, "source");
            copyParent = "observe";
        }
        topology.addProcessor("copy", () -> new Copy(forwarded, args.expect(), done), copyParent);
        topology.addSink("sink", args.output(), new ByteArraySerializer(), new ByteArraySerializer(), SAME_PARTITION, "copy");

        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicLong firstRunning = new AtomicLong(); // nanoTime of the first RUNNING state
        KafkaStreams streams = new KafkaStreams(topology, props);
        streams.setUncaughtExceptionHandler(e -> {
            failure.compareAndSet(null, e);
            done.countDown();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                firstRunning.compareAndSet(0, System.nanoTime());
            }
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.PENDING_ERROR) {
                failure.compareAndSet(null, new IllegalStateException("Kafka Streams went to " + now));
                done.countDown();
            }
        });

        // Marks the start of the timed span for a watcher of this process (bench suite).
        System.out.println("{\"event\":\"start\"}");
        System.out.flush();
        long cpuStart = processCpuNanos();
        long start = System.nanoTime();
        streams.start();
        boolean reached = done.await(args.timeoutS(), TimeUnit.SECONDS);
        long reachedAt = System.nanoTime();
        boolean closed = streams.close(Duration.ofSeconds(120));
        long end = System.nanoTime();
        long cpu = processCpuNanos() - cpuStart;
        deleteQuietly(stateDir);

        if (failure.get() != null) {
            System.err.println("passthrough: failed after " + forwarded.get() + " records: " + failure.get());
            System.exit(1);
        }
        if (!reached) {
            System.err.println("passthrough: timed out after " + args.timeoutS() + " s with " + forwarded.get()
                    + " of " + args.expect() + " records forwarded");
            System.exit(1);
        }
        if (!closed) {
            System.err.println("passthrough: close did not finish within 120 s");
            System.exit(1);
        }
        double seconds = (end - start) / 1e9;
        System.err.printf(Locale.ROOT, "passthrough: %s, %d thread(s): first RUNNING after %.3f s, %d records forwarded after %.3f s,"
                + " closed (flushed, committed) after %.3f s; process CPU %.2f s%n",
                props.get(StreamsConfig.APPLICATION_ID_CONFIG), args.threads(), firstRunning.get() == 0 ? Double.NaN : (firstRunning.get() - start) / 1e9,
                forwarded.get(), (reachedAt - start) / 1e9, seconds, cpu / 1e9);
        String observed = !args.observe() ? "" : String.format(Locale.ROOT,
                ",\"observed\":{\"records\":%d,\"unparseable\":%d,\"invalid\":{\"event_time\":%d,\"user_id\":%d,\"page\":%d}}",
                OBSERVED[0].get(), OBSERVED[1].get(), OBSERVED[2].get(), OBSERVED[3].get(), OBSERVED[4].get());
        System.out.printf(Locale.ROOT, "{\"records\":%d,\"seconds\":%.3f%s}%n", forwarded.get(), seconds, observed);
        System.out.flush();
        System.exit(0);
    }

    private static Args parse(String[] argv) {
        String bootstrap = null, input = null, output = null;
        Integer threads = null;
        Long expect = null;
        long timeoutS = 600;
        boolean observe = false;
        for (int i = 0; i < argv.length; i++) {
            String flag = argv[i];
            if (flag.equals("--observe")) {
                observe = true;
                continue;
            }
            if (i + 1 >= argv.length) {
                throw new IllegalArgumentException(flag + " needs a value");
            }
            String value = argv[++i];
            try {
                switch (flag) {
                    case "--bootstrap" -> bootstrap = value;
                    case "--input" -> input = value;
                    case "--output" -> output = value;
                    case "--threads" -> threads = Integer.parseInt(value);
                    case "--expect" -> expect = Long.parseLong(value);
                    case "--timeout-s" -> timeoutS = Long.parseLong(value);
                    default -> throw new IllegalArgumentException("unknown flag " + flag);
                }
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(flag + " needs a number, not `" + value + "`");
            }
        }
        if (bootstrap == null || input == null || output == null || threads == null || expect == null) {
            throw new IllegalArgumentException("--bootstrap, --input, --output, --threads and --expect are required");
        }
        if (threads < 1 || expect < 1 || timeoutS < 1) {
            throw new IllegalArgumentException("--threads, --expect and --timeout-s must be at least 1");
        }
        return new Args(bootstrap, input, output, threads, expect, timeoutS, observe);
    }

    /** CPU time of the whole JVM (all threads, GC and JIT included), or 0 where unknown. */
    private static long processCpuNanos() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return Math.max(0, os.getProcessCpuTime());
        }
        return 0;
    }

    private static void deleteQuietly(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // a leftover empty temp dir is harmless
        }
    }

    private Passthrough() {}
}
