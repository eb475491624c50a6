// A pgjdbc client writing through failovers; see README.md (line protocol).
// No package: compiled at test time with `javac -d DIR PgjdbcWriter.java`.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.SQLException;

public final class PgjdbcWriter {
  private static volatile boolean stop = false;

  private static synchronized void line(String s) {
    System.out.println(s);
    System.out.flush();
  }

  private static String now() {
    return String.format("%.3f", System.nanoTime() / 1e6 - nanoBase + wallBase);
  }

  private static final double wallBase = System.currentTimeMillis();
  private static final double nanoBase = System.nanoTime() / 1e6;

  private static String oneLine(Throwable e) {
    String state = (e instanceof SQLException) ? ((SQLException) e).getSQLState() : null;
    String m = (state == null ? "" : state + " ") + e.getClass().getSimpleName() + ": " + e.getMessage();
    return m.replace('\n', ' ').replace('\r', ' ');
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 2 && args.length != 3) {
      System.err.println("usage: PgjdbcWriter JDBC_URL FIRST_ID [PAUSE_MS]");
      System.exit(2);
    }
    String url = args[0];
    long id = Long.parseLong(args[1]);
    long pauseMs = args.length == 3 ? Long.parseLong(args[2]) : 0;
    // Optional: one statement run on each new connection (e.g. a SET).
    String setup = System.getenv("HADR_WRITER_SETUP");
    Thread watcher = new Thread(() -> {
      try {
        while (System.in.read() >= 0) {
          // Input is ignored; only its end matters.
        }
      } catch (java.io.IOException e) {
        // A broken stdin means the same as its end.
      }
      stop = true;
    });
    watcher.setDaemon(true);
    watcher.start();
    while (!stop) {
      Connection c;
      try {
        c = DriverManager.getConnection(url);
        c.setAutoCommit(true);
        if (setup != null && !setup.isEmpty()) {
          try (java.sql.Statement st = c.createStatement()) {
            st.execute(setup);
          } catch (SQLException e) {
            c.close();
            throw e;
          }
        }
      } catch (SQLException e) {
        line("err " + now() + " connect: " + oneLine(e));
        Thread.sleep(20);
        continue;
      }
      line("connected " + now());
      try (Connection conn = c;
          PreparedStatement ps = conn.prepareStatement("INSERT INTO acked(id) VALUES (?)")) {
        while (!stop) {
          long mine = id++;
          ps.setLong(1, mine);
          ps.executeUpdate();
          line("ack " + mine + " " + now());
          if (pauseMs > 0) {
            Thread.sleep(pauseMs);
          }
        }
      } catch (SQLException e) {
        line("err " + now() + " " + oneLine(e));
        Thread.sleep(20);
      }
    }
  }
}
