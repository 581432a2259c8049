package tidewatch.opensearch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single OpenSearch 2.x node in this JVM, for development and tests (started by
 * scripts/opensearch.sh; compiled by it against the Maven Central jars).
 *
 * <pre>java -cp 'libs/*:launcher' tidewatch.opensearch.EmbeddedNode HOME</pre>
 *
 * HOME is path.home; the settings come from HOME/config/opensearch.yml. The node runs
 * until the JVM gets SIGTERM/SIGINT, when it is closed cleanly. Unlike the distribution's
 * bootstrap this skips the bootstrap checks, the security manager and the refusal to
 * run as root. The plugins are loaded from the class path: HTTP and transport
 * (Netty4Plugin) and the common analyzers (CommonAnalysisPlugin).
 */
public final class EmbeddedNode {
    private static final Logger LOG = LogManager.getLogger(EmbeddedNode.class);

    /** Node's constructor that takes class-path plugins is protected. */
    private static final class PluginNode extends Node {
        PluginNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    private EmbeddedNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: EmbeddedNode PATH_HOME (settings in PATH_HOME/config/opensearch.yml)");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath().normalize();
        Path config = home.resolve("config");
        if (!Files.isRegularFile(config.resolve("opensearch.yml"))) {
            System.err.println("EmbeddedNode: missing " + config.resolve("opensearch.yml"));
            System.exit(2);
        }

        Node node;
        try {
            Settings input = Settings.builder().put("path.home", home.toString()).build();
            Environment environment =
                InternalSettingsPreparer.prepareEnvironment(input, Collections.emptyMap(), config, () -> "tidewatch");
            node = new PluginNode(environment, List.of(Netty4Plugin.class, CommonAnalysisPlugin.class));
        } catch (Throwable e) {
            LOG.fatal("could not create the node", e);
            shutdownLogging();
            System.exit(1);
            return;
        }

        CountDownLatch closed = new CountDownLatch(1);
        // Log4j's own shutdown hook is disabled (-Dlog4j.shutdownHookEnabled=false) so
        // that the node can still log while it closes; this hook stops logging last.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                LOG.info("stopping the node");
                node.close();
                if (!node.awaitClose(30, TimeUnit.SECONDS)) {
                    LOG.warn("the node did not close within 30 s");
                }
                LOG.info("node stopped");
            } catch (Throwable e) {
                LOG.error("error while stopping the node", e);
            } finally {
                closed.countDown();
                shutdownLogging();
            }
        }, "tidewatch-opensearch-shutdown"));

        try {
            node.start();
        } catch (Throwable e) {
            LOG.fatal("could not start the node", e);
            System.exit(1); // runs the hook, which closes the node
        }
        LOG.info("tidewatch embedded OpenSearch node started");
        // The node's threads are daemon threads: keep the JVM alive until it is closed.
        closed.await();
    }

    private static void shutdownLogging() {
        LogManager.shutdown();
    }
}
