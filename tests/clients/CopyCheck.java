// COPY through pgjdbc's CopyManager (tests/copy.rs): load rows as CSV,
// read them back as text, and have a bad row refused. Prints
// "in N out N bad SQLSTATE" or "error SQLSTATE message".
import java.io.*;
import java.sql.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class CopyCheck {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[1]);
        try (Connection c = DriverManager.getConnection(a[0], "test", "")) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE jcopy(id integer primary key, name text, price numeric(10,2))");
            }
            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder csv = new StringBuilder();
            for (int i = 0; i < n; i++) {
                csv.append(i).append(",\"name, ").append(i).append("\",").append(i % 1000).append(".25\n");
            }
            long in = cm.copyIn("COPY jcopy FROM STDIN WITH (FORMAT csv)", new StringReader(csv.toString()));
            StringWriter out = new StringWriter();
            long outRows = cm.copyOut("COPY jcopy TO STDOUT", out);
            String bad = "none";
            try {
                cm.copyIn("COPY jcopy FROM STDIN", new StringReader(n + "\tok\t1\nx\tbad\t2\n"));
            } catch (SQLException e) {
                bad = e.getSQLState();
            } catch (IOException e) {
                bad = "io " + e.getMessage();
            }
            long lines = out.toString().lines().count();
            System.out.println("in " + in + " out " + outRows + " lines " + lines + " bad " + bad);
        } catch (SQLException e) {
            System.out.println("error " + e.getSQLState() + " " + e.getMessage());
        } catch (IOException e) {
            System.out.println("error io " + e.getMessage());
        }
    }
}
