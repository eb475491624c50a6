// Connects once with the JDBC URL it is given, runs `SELECT 1`, and prints
// "ok <value>" (exit 0) or "err <message>" (exit 1). tests/tls.rs runs it
// in Java's source-file mode: java -cp /usr/share/java/postgresql.jar TlsProbe.java URL
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;

public class TlsProbe {
    public static void main(String[] args) {
        try (Connection c = DriverManager.getConnection(args[0]);
             Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT 1")) {
            rs.next();
            System.out.println("ok " + rs.getInt(1));
        } catch (Exception e) {
            System.out.println("err " + String.valueOf(e.getMessage()).replace('\n', ' '));
            System.exit(1);
        }
    }
}
