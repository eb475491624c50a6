// Log in with pgjdbc and run one query: prints "ok 42" or "error SQLSTATE message".
// Used by tests/auth.rs.
import java.sql.*;

public class AuthCheck {
    public static void main(String[] a) {
        try (Connection c = DriverManager.getConnection(a[0], a[1], a[2]);
             Statement s = c.createStatement();
             ResultSet r = s.executeQuery("SELECT 41 + 1")) {
            r.next();
            System.out.println("ok " + r.getInt(1));
        } catch (SQLException e) {
            System.out.println("error " + e.getSQLState() + " " + e.getMessage());
        }
    }
}
