package rill.clients;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.kafka.common.utils.internals.Exit;

/**
 * One JVM per Rust test: reads commands from stdin, one per line, arguments separated by tabs,
 * and runs them one at a time. This is the command protocol every client program of the matrix
 * speaks (see broker/tests/common/clients.rs):
 *
 * <ul>
 *   <li>a command's output lines go to stdout as they are;
 *   <li>{@code @@err LINE} is a line the command wrote to stderr (tools only: their messages);
 *   <li>{@code @@pause LABEL} means the command waits for one stdin line before going on, so the
 *       test can look at the broker in the middle of a scenario;
 *   <li>{@code @@exit CODE} ends the command's output.
 * </ul>
 *
 * <p>{@code tool CLASS ARGS...} runs a Kafka command-line tool's main in this JVM (as Kafka's own
 * tests do), with {@link Exit} turned into an exception, so one JVM serves every tool call of a
 * test. An argument {@code @stdin=PATH} feeds the file to the tool's stdin. Any other first word
 * is a scenario of {@link Scenarios} or {@link StreamsScenarios}.
 */
public final class Runner {
  /** Thrown instead of exiting the JVM when a tool calls Exit.exit. */
  static final class ExitCalled extends RuntimeException {
    final int code;

    ExitCalled(int code, String message) {
      super("exit " + code + (message == null ? "" : ": " + message));
      this.code = code;
    }
  }

  static final PrintStream OUT = System.out;
  private static Integer exitCode;
  private static final List<Runnable> shutdownHooks = new ArrayList<>();
  static final PrintStream ERR = System.err;
  private static BufferedReader commands;

  public static void main(String[] args) throws Exception {
    // A tool that catches everything (TopicCommand does) turns our exception into a second
    // exit call: the first code a command asks for is its exit code.
    Exit.setExitProcedure((code, message) -> {
      if (exitCode == null) {
        exitCode = code;
      }
      throw new ExitCalled(code, message);
    });
    Exit.setHaltProcedure((code, message) -> {
      if (exitCode == null) {
        exitCode = code;
      }
      throw new ExitCalled(code, message);
    });
    // Shutdown hooks run when the tool's command ends, as they would when its JVM exits
    // (the console producer closes, and so flushes, its producer in one).
    Exit.setShutdownHookAdder((name, hook) -> shutdownHooks.add(hook));
    commands = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    OUT.println("@@ready");
    OUT.flush();
    String line;
    while ((line = commands.readLine()) != null) {
      if (line.isEmpty()) {
        continue;
      }
      List<String> words = new ArrayList<>(Arrays.asList(line.split("\t", -1)));
      int code;
      try {
        code = run(words);
      } catch (Throwable t) {
        ERR.println("command failed: " + String.join(" ", words));
        t.printStackTrace(ERR);
        OUT.println("error " + describe(t));
        code = 1;
      }
      OUT.println("@@exit " + code);
      OUT.flush();
    }
  }

  /** The class and message of `t` and of its causes, on one line. */
  static String describe(Throwable t) {
    StringBuilder sb = new StringBuilder();
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c instanceof InvocationTargetException
          || c instanceof java.util.concurrent.ExecutionException) {
        continue;
      }
      if (sb.length() > 0) {
        sb.append(" <- ");
      }
      sb.append(c.getClass().getName()).append(": ").append(c.getMessage());
      if (c.getCause() == c) {
        break;
      }
    }
    return sb.toString().replace('\n', ' ');
  }

  /** Waits for the test to say go on (one stdin line). */
  static void pause(String label) throws Exception {
    OUT.println("@@pause " + label);
    OUT.flush();
    if (commands.readLine() == null) {
      throw new IllegalStateException("stdin closed during pause " + label);
    }
  }

  private static int run(List<String> words) throws Exception {
    String first = words.remove(0);
    if (first.equals("tool")) {
      return runTool(words);
    }
    String[] args = words.toArray(new String[0]);
    if (first.startsWith("streams-")) {
      return StreamsScenarios.run(first, args);
    }
    return Scenarios.run(first, args);
  }

  private static int runTool(List<String> words) throws Exception {
    String className = words.remove(0);
    InputStream stdin = InputStream.nullInputStream();
    List<String> args = new ArrayList<>();
    for (String w : words) {
      if (w.startsWith("@stdin=")) {
        stdin = new FileInputStream(w.substring("@stdin=".length()));
      } else {
        args.add(w);
      }
    }
    Method main = Class.forName(className).getMethod("main", String[].class);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    PrintStream toolOut = new PrintStream(out, true, StandardCharsets.UTF_8);
    PrintStream toolErr = new PrintStream(err, true, StandardCharsets.UTF_8);
    InputStream oldIn = System.in;
    int code = 0;
    exitCode = null;
    shutdownHooks.clear();
    System.setOut(toolOut);
    System.setErr(toolErr);
    System.setIn(stdin);
    try {
      main.invoke(null, (Object) args.toArray(new String[0]));
    } catch (InvocationTargetException e) {
      Throwable cause = e.getCause();
      if (!(cause instanceof ExitCalled) && exitCode == null) {
        cause.printStackTrace(toolErr);
        code = 1;
      }
    } catch (ExitCalled e) {
      // the code is in exitCode
    } finally {
      for (Runnable hook : shutdownHooks) {
        try {
          hook.run();
        } catch (Throwable t) {
          t.printStackTrace(toolErr);
        }
      }
      shutdownHooks.clear();
      toolOut.flush();
      toolErr.flush();
      System.setOut(OUT);
      System.setErr(ERR);
      System.setIn(oldIn);
      stdin.close();
    }
    if (exitCode != null) {
      code = exitCode;
    }
    for (String l : out.toString(StandardCharsets.UTF_8).split("\n", -1)) {
      if (!l.isEmpty()) {
        OUT.println(l);
      }
    }
    for (String l : err.toString(StandardCharsets.UTF_8).split("\n", -1)) {
      if (!l.isEmpty()) {
        OUT.println("@@err " + l);
      }
    }
    return code;
  }
}
